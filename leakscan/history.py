"""Scan a git repository: every unique blob of every ref once, every commit message, the work
tree's uncommitted files, with attribution, incremental through the store.

Incremental rule: the store remembers which ref tips a complete scan covered and which objects
it scanned (by id, with a findings count; never a secret). The next scan walks only history new
since those tips, skips objects already scanned with the same detector set, and re-reads the few
objects that had findings so that every finding is reported again. If any remembered tip is no
longer reachable (a force-push, a deleted branch), it walks everything again.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

from .findings import Suppressions
from .model import Finding, Origin, Skip
from .scan import ScanResult, ScanStats, Scanner, finish
from .sources.files import FileEntry, walk
from .sources.git import GitBlob, GitMessage, GitRepo, GitWarning
from .store import Store

COMMIT_MESSAGE_PATH = "(commit message)"


@dataclass(frozen=True)
class HistoryOptions:
    all_objects: bool = False  # also unreachable blobs in the object store
    since: str | None = None  # only what is reachable from some ref but not from this revision
    rev_range: str | None = None  # only what "A..B" adds
    work_tree: bool = True  # also the work tree's files that differ from HEAD


def scan_repository(repo: GitRepo, scanner: Scanner, *, store: Store | None = None,
                    options: HistoryOptions = HistoryOptions(), suppressions: Suppressions | None = None,
                    include_deps: bool = False) -> ScanResult:  # fmt: skip
    started = time.monotonic()
    result = ScanResult()
    key = scanner.cache_key
    repo_id = str(repo.git_dir.resolve())
    partial = bool(options.since or options.rev_range)
    known = store.scanned_objects(key) if store else {}
    tips = repo.ref_tips()
    previous = store.repo_tips(repo_id, key) if store and not partial else None
    if previous is not None and not _all_reachable(repo, previous):
        previous = None  # history was rewritten: walk everything again
    if partial:
        walk_args = {"since": options.since, "rev_range": options.rev_range}
    elif previous is not None:
        walk_args = {"since": previous}
    else:
        walk_args = {}

    found: list[Finding] = []
    scanned: list[tuple[str, int]] = []  # (oid, findings) to remember
    blob_findings: dict[str, list[Finding]] = {}
    bytes_scanned = 0
    objects = 0

    def take(blob: GitBlob, read) -> None:
        nonlocal bytes_scanned, objects
        got = scanner.scan_stream(read, blob.origin())
        bytes_scanned += blob.size
        objects += 1
        scanned.append((blob.oid, len(got)))
        if got:
            blob_findings[blob.oid] = got
            found.extend(got)

    # 1. blobs: new ones, plus those that had findings before (their findings are reported again)
    if not known and not options.all_objects:
        items = repo.blob_contents(**walk_args)
    else:
        todo = []
        for item in repo.blobs(all_objects=options.all_objects and not partial, **walk_args):
            if isinstance(item, GitWarning) or known.get(item.oid, 1) > 0:
                todo.append(item)
        items = repo.read_blobs(todo)
    for item in items:
        if isinstance(item, GitWarning):
            result.skipped.append(item.to_skip())
        else:
            take(*item)
    if previous is not None and store is not None:
        seen = set(blob_findings) | {oid for oid, _ in scanned}
        again = [GitBlob(oid, path, 0) for oid, path in store.objects_with_findings(repo_id, key, "history")
                 if oid not in seen]  # fmt: skip
        for item in repo.read_blobs(again):
            if isinstance(item, GitWarning):
                result.skipped.append(item.to_skip())
            else:
                take(*item)

    # 2. commit and tag messages
    message_findings: list[Finding] = []
    for msg in repo.messages(**walk_args):
        if isinstance(msg, GitWarning):
            result.skipped.append(msg.to_skip())
            continue
        got = scanner.scan_bytes(msg.message, Origin(COMMIT_MESSAGE_PATH, "commit-message", msg.oid))
        for f in got:
            f.extra.update(author=msg.author, date=msg.date)
        message_findings.extend(got)
    if previous is not None and store is not None:
        old = [oid for oid, _ in store.objects_with_findings(repo_id, key, "commit-message")]
        for msg in repo.messages_of(old):
            if isinstance(msg, GitMessage) and not any(f.commit == msg.oid for f in message_findings):
                got = scanner.scan_bytes(msg.message, Origin(COMMIT_MESSAGE_PATH, "commit-message", msg.oid))
                for f in got:
                    f.extra.update(author=msg.author, date=msg.date)
                message_findings.extend(got)

    message_findings = _earliest_per_secret(message_findings)

    # 3. attribution and what the tip still holds, only for blobs with findings
    _attribute(repo, repo_id, store, blob_findings)
    head = repo.head_blobs()
    in_head = {f.secret_sha256 for oid, fs in blob_findings.items() if oid in head for f in fs}
    for f in found + message_findings:
        f.extra["in_head"] = f.secret_sha256 in in_head

    # 4. the work tree's files that are not HEAD's committed content
    files: list[Finding] = []
    files_bytes = files_count = 0
    if options.work_tree and not repo.bare and not partial:
        tree = repo.head_tree()
        for entry in walk(repo.path, include_deps=include_deps):
            if isinstance(entry, Skip):
                result.skipped.append(entry)
                continue
            if entry.path in tree and _blob_id(entry, repo.object_format) == tree[entry.path]:
                continue
            got, skip = scanner.scan_file(entry)
            files_bytes += entry.size
            files_count += 1
            files.extend(got)
            if skip:
                result.skipped.append(skip)

    if store is not None:
        store.record_objects(key, scanned)
        if not partial:
            store.record_findings_objects(
                repo_id, key,
                [(oid, fs[0].path, "history") for oid, fs in blob_findings.items()]
                + [(f.commit, COMMIT_MESSAGE_PATH, "commit-message") for f in message_findings],
                replace=previous is None)  # fmt: skip
            store.record_repo_tips(repo_id, key, tips)
    result.stats = ScanStats(files=files_count, objects=objects, bytes=bytes_scanned + files_bytes)
    finish(result, found + message_findings + files, suppressions)
    result.stats.seconds = time.monotonic() - started
    return result


def _earliest_per_secret(findings: list[Finding]) -> list[Finding]:
    """A secret quoted in many commit messages (stash and merge commits repeat subjects) is one
    leak: keep the oldest message."""
    best: dict[tuple[str, str], Finding] = {}
    for f in findings:
        key = (f.detector, f.secret_sha256)
        if key not in best or (f.extra.get("date") or "") < (best[key].extra.get("date") or ""):
            best[key] = f
    return list(best.values())


def _all_reachable(repo: GitRepo, tips: list[str]) -> bool:
    present = repo.existing(tips)
    if len(present) != len(tips):
        return False
    return repo.unreachable_from_refs(present) == []


def _attribute(repo: GitRepo, repo_id: str, store: Store | None, blob_findings: dict[str, list[Finding]]) -> None:
    pairs = sorted({(oid, f.path) for oid, fs in blob_findings.items() for f in fs})
    if not pairs:
        return
    cached = store.attributions(repo_id, pairs) if store else {}
    missing = [p for p in pairs if p not in cached]
    if missing:
        fresh = repo.attribute(missing)
        rows = [(a.oid, a.path, a.commit, a.author, a.date) for a in fresh.values()]
        if store:
            store.record_attributions(repo_id, rows)
        cached.update({(oid, path): (c, au, d) for oid, path, c, au, d in rows})
    for oid, fs in blob_findings.items():
        for f in fs:
            att = cached.get((oid, f.path))
            if att:
                f.commit, author, date = att
                f.extra.update(author=author, date=date)
            else:  # an unreachable blob: no commit introduced it
                f.extra.update(author=None, date=None)
            f.extra["blob"] = oid


def _blob_id(entry: FileEntry, object_format: str) -> str | None:
    """The id git would give this file's content (no filters: what the bytes are)."""
    h = hashlib.sha256() if object_format == "sha256" else hashlib.sha1()
    h.update(b"blob %d\0" % entry.size)
    try:
        with open(entry.abspath, "rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
    except OSError:
        return None
    return h.hexdigest()
