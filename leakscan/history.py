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
import itertools
import time
from datetime import datetime, timezone
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .findings import Suppressions
from .model import Finding, Place, Skip
from .scan import (PARALLEL_MIN_BYTES, ScanResult, ScanStats, Scanner, default_jobs, finish, map_batches,
                   unsuppressed, worker_scanner)  # fmt: skip
from .sources.files import FileEntry, walk
from .sources.git import Attribution, BlobReader, GitBlob, GitRepo, GitSourceError, GitWarning, open_repo
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
                    include_deps: bool = False, jobs: int | None = None,
                    on_findings: Callable[[list[Finding]], None] | None = None) -> ScanResult:  # fmt: skip
    started = time.monotonic()
    result = ScanResult()
    explicit_jobs = jobs is not None  # asked for: used whatever the size
    jobs = jobs or default_jobs()
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

    # 1. blobs: new ones, plus those that had findings before (their findings are reported again)
    known_attributions: dict[tuple[str, str], Attribution] = {}
    listing = None
    if not options.all_objects:
        try:  # one `git log --raw` walk lists every blob with the commit that introduced it
            intro = repo.introductions(**walk_args)
            sizes = repo.sizes(list(intro))
            listing = [GitBlob(oid, att.path, sizes.get(oid, 0)) for oid, att in intro.items()]
            known_attributions = {(att.oid, att.path): att for att in intro.values()}
        except GitSourceError:
            listing = None  # damaged history: the rev-list walk below warns and goes on
    if listing is None:
        listing = list(repo.blobs(all_objects=options.all_objects and not partial, **walk_args))
    todo = [item for item in listing if isinstance(item, GitWarning) or known.get(item.oid, 1) > 0]
    if previous is not None and store is not None:
        listed = {b.oid for b in todo if isinstance(b, GitBlob)}
        todo += [GitBlob(oid, path, 0) for oid, path in store.objects_with_findings(repo_id, key, "history")
                 if oid not in listed]  # fmt: skip
    batch = BlobBatch()
    size = sum(b.size for b in todo if isinstance(b, GitBlob))
    if jobs > 1 and (explicit_jobs or size >= PARALLEL_MIN_BYTES):
        # more shards than workers, so results (and their verification) start flowing early
        shards = [(str(repo.path), part) for part in _shards(todo, jobs * 4)]
        for part in map_batches(scanner, _scan_shard, shards, jobs):
            batch.merge(part)
            if on_findings:
                on_findings(unsuppressed(part.found, suppressions))
    else:
        batch.take(scanner, repo.read_blobs(todo), lfs_store=_lfs_store(repo))
        if on_findings:
            on_findings(unsuppressed(batch.found, suppressions))
    result.skipped.extend(batch.skipped)
    found, scanned, objects, bytes_scanned = batch.found, batch.scanned, batch.objects, batch.bytes
    blob_findings: dict[str, list[Finding]] = {}
    for f in found:
        blob_findings.setdefault(f.blob, []).append(f)

    # 2. commit and tag messages (and, incrementally, the older ones that had findings)
    messages = repo.messages(**walk_args)
    if previous is not None and store is not None:
        old = [oid for oid, _ in store.objects_with_findings(repo_id, key, "commit-message")]
        messages = itertools.chain(messages, repo.messages_of(old))
    message_findings: list[Finding] = []
    seen_messages: set[str] = set()
    for msg in messages:
        if isinstance(msg, GitWarning):
            result.skipped.append(msg.to_skip())
        elif msg.oid not in seen_messages:
            seen_messages.add(msg.oid)
            got = scanner.scan_bytes(msg.message, Place(COMMIT_MESSAGE_PATH, "commit-message", msg.oid,
                                                              author=msg.author, date=msg.date))
            message_findings += got.findings
            if on_findings and got.findings:
                on_findings(unsuppressed(got.findings, suppressions))

    message_findings = _oldest(message_findings, key=lambda f: (f.detector, f.secret_sha256))

    # 3. attribution and what the tip still holds, only for blobs with findings
    _attribute(repo, repo_id, store, blob_findings, known_attributions)
    head = repo.head_blobs()
    in_head = {f.secret_sha256 for oid, fs in blob_findings.items() if oid in head for f in fs}
    for f in found + message_findings:
        f.in_head = f.secret_sha256 in in_head
    # Every revision of a file is a new blob; a secret that sat in it across 40 revisions is one
    # leak at one place: report it once, where it first appeared.
    found = _oldest(found, key=lambda f: f.fingerprint)

    # 4. the work tree's files that are not HEAD's committed content
    files: list[Finding] = []
    files_bytes = files_count = 0
    if options.work_tree and not repo.bare and not partial:
        tree = repo.head_tree()
        for entry in _worktree_entries(repo, include_deps):
            if isinstance(entry, Skip):
                result.skipped.append(entry)
                continue
            if entry.path in tree and _blob_id(entry, repo.object_format) == tree[entry.path]:
                continue  # HEAD's committed content: the history scan covered it
            got = scanner.scan_file(entry, lfs_store=_lfs_store(repo))
            files_bytes += entry.size
            files_count += 1
            files += got.findings
            result.skipped += got.skipped
            if on_findings and got.findings:
                on_findings(unsuppressed(got.findings, suppressions))

    if store is not None:
        store.record_objects(key, scanned)
        if not partial:
            store.record_findings_objects(
                repo_id, key,
                [(oid, fs[0].path, "history") for oid, fs in blob_findings.items()]
                + [(f.commit, COMMIT_MESSAGE_PATH, "commit-message") for f in message_findings],
                replace=previous is None)  # fmt: skip
            store.record_repo_tips(repo_id, key, tips)
    result.stats = ScanStats(files=files_count, objects=objects, bytes=bytes_scanned + files_bytes,
                             incremental=previous is not None)  # fmt: skip
    finish(result, found + message_findings + files, suppressions)
    result.stats.seconds = time.monotonic() - started
    return result


@dataclass
class BlobBatch:
    """What scanning a run of blobs gave; a worker process returns one of these."""

    found: list[Finding] = field(default_factory=list)
    scanned: list[tuple[str, int]] = field(default_factory=list)  # (oid, findings) for the store
    skipped: list[Skip] = field(default_factory=list)
    objects: int = 0
    bytes: int = 0

    def take(self, scanner: Scanner, items: Iterable[tuple[GitBlob, BlobReader] | GitWarning],
             lfs_store: Path | None = None) -> BlobBatch:  # fmt: skip
        for item in items:
            if isinstance(item, GitWarning):
                self.skipped.append(item.to_skip())
                continue
            blob, read = item
            got = scanner.scan_stream(read, blob.origin(), lfs_store=lfs_store)
            for f in got.findings:
                f.blob = blob.oid
            self.found += got.findings
            self.skipped += got.skipped
            self.scanned.append((blob.oid, len(got.findings)))
            self.objects += 1
            self.bytes += blob.size
        return self

    def merge(self, other: BlobBatch) -> None:
        self.found += other.found
        self.scanned += other.scanned
        self.skipped += other.skipped
        self.objects += other.objects
        self.bytes += other.bytes


def _shards(items: list[GitBlob | GitWarning], n: int) -> list[list[GitBlob | GitWarning]]:
    """`n` contiguous runs of about equal bytes: neighbours in walk order share delta bases, so
    each worker's `git cat-file` keeps its cache warm."""
    total = sum(b.size for b in items if isinstance(b, GitBlob)) or 1
    shards: list[list[GitBlob | GitWarning]] = [[] for _ in range(n)]
    acc = 0
    for item in items:
        shards[min(n - 1, acc * n // total)].append(item)
        acc += item.size if isinstance(item, GitBlob) else 0
    return [s for s in shards if s]


def _scan_shard(job: tuple[str, list[GitBlob | GitWarning]]) -> BlobBatch:
    """In a worker process: its own `git cat-file --batch` over its run of blobs."""
    path, items = job
    repo = open_repo(path)
    return BlobBatch().take(worker_scanner(), repo.read_blobs(items), lfs_store=_lfs_store(repo))


def _oldest(findings: list[Finding], key) -> list[Finding]:
    """One finding per key, the one with the oldest date (then commit id, for determinism). A
    secret quoted in many commit messages (stash and merge commits repeat subjects) is one leak."""
    best: dict[object, Finding] = {}
    for f in findings:
        k = key(f)
        old = best.get(k)
        if old is None or _age(f) < _age(old):
            best[k] = f
    return list(best.values())


def _age(f: Finding) -> tuple[str, str, int]:
    return (_utc(f.date), f.commit or "", f.line)


def _utc(date: str | None) -> str:
    if not date:
        return "9999"  # unattributed (unreachable) last
    try:
        return datetime.fromisoformat(date).astimezone(timezone.utc).isoformat()
    except ValueError:
        return date


def _all_reachable(repo: GitRepo, tips: list[str]) -> bool:
    present = repo.existing(tips)
    if len(present) != len(tips):
        return False
    return repo.unreachable_from_refs(present) == []


def _attribute(repo: GitRepo, repo_id: str, store: Store | None, blob_findings: dict[str, list[Finding]],
               known: dict[tuple[str, str], Attribution]) -> None:  # fmt: skip
    """commit, author and date for each finding's blob: from the enumeration walk when it gave
    them, else from the store, else from a `git log --find-object` walk (then stored)."""
    pairs = sorted({(oid, f.path) for oid, fs in blob_findings.items() for f in fs})
    if not pairs:
        return
    cached = store.attributions(repo_id, pairs) if store else {}
    missing = [p for p in pairs if p not in cached]
    if missing:
        fresh = {p: known[p] for p in missing if p in known}
        rest = [p for p in missing if p not in known]
        if rest:
            fresh.update(repo.attribute(rest))
        rows = [(a.oid, a.path, a.commit, a.author, a.date) for a in fresh.values()]
        if store:
            store.record_attributions(repo_id, rows)
        cached.update({(oid, path): (c, au, d) for oid, path, c, au, d in rows})
    for oid, fs in blob_findings.items():
        for f in fs:
            att = cached.get((oid, f.path))
            if att:
                f.commit, f.author, f.date = att


def _lfs_store(repo: GitRepo) -> Path:
    """Where git-lfs keeps fetched content: scanned in place of the pointers naming it."""
    return repo.git_dir / "lfs" / "objects"


def _worktree_entries(repo: GitRepo, include_deps: bool):
    """The files git would consider (tracked, or untracked and not ignored), as the file walker
    sees them: regular files only, no symlinks followed, virtualenvs skipped."""
    wanted = set(repo.worktree_files())
    for entry in walk(repo.path, include_deps=include_deps):
        if isinstance(entry, Skip) or entry.path in wanted:
            yield entry


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
