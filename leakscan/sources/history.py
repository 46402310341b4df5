"""Sources: a git repository's history — every blob of every ref with every place it was put
at, every commit and annotated-tag message — and the work tree's files whose content is not
HEAD's.

Incremental rule: the store remembers which ref tips a complete scan covered and which objects
had findings (by id; never a secret). The next scan walks only the history new since those tips
(the pipeline's scan cache skips blobs already scanned clean) and re-reads the few objects that
had findings, so that every finding is reported again. If any remembered tip is no longer
reachable (a force-push, a deleted branch), it walks everything again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from ..model import Finding, Place, Skip
from .base import Blob, Opened, Source, bytes_opener
from .files import FileEntry, TreeSource
from .git import GitBlob, GitMessage, GitRepo, GitSourceError, GitWarning, Pushed, open_repo

COMMIT_MESSAGE_PATH = "(commit message)"
TAG_MESSAGE_PATH = "(tag message)"


@dataclass(frozen=True)
class HistoryOptions:
    all_objects: bool = False  # also unreachable blobs in the object store
    since: str | None = None  # only what is reachable from some ref but not from this revision
    rev_range: str | Pushed | None = None  # only what "A..B" adds (or a push brings)
    work_tree: bool = True  # also the work tree's files that differ from HEAD


def git_sources(repo: GitRepo, *, store=None, cache_key: str = "", options: HistoryOptions = HistoryOptions(),
                include_deps: bool = False) -> list[Source]:  # fmt: skip
    """The sources of one repository, in the order the pipeline scans them."""
    plan = _Plan.make(repo, store, cache_key, options)
    blobs = BlobHistory(repo, plan, options.all_objects)
    sources: list[Source] = [blobs, MessageHistory(repo, plan, blobs)]
    if options.work_tree and not repo.bare and not plan.partial:
        sources.append(worktree_source(repo, include_deps))
    return sources


@dataclass
class _Plan:
    """What to walk, shared by the blob and message sources of one scan."""

    store: object | None
    key: str
    repo_id: str
    partial: bool  # a range or --since: the store's view of the repository is not updated
    previous: list[str] | None  # tips of the last complete scan, when still all reachable
    walk: dict
    tips: list[str]  # the ref tips a complete scan covers, read before it walks; [] when not recorded

    @classmethod
    def make(cls, repo: GitRepo, store, key: str, options: HistoryOptions) -> _Plan:
        repo_id = str(repo.git_dir.resolve())
        partial = bool(options.since or options.rev_range)
        recorded = store is not None and not partial
        tips = repo.ref_tips() if recorded else []  # two git processes a push need not wait on
        previous = store.repo_tips(repo_id, key) if recorded else None
        if previous is not None and not _all_reachable(repo, previous):
            previous = None  # history was rewritten: walk everything again
        if partial:
            walk = {"since": options.since, "rev_range": options.rev_range}
        elif previous is not None:
            walk = {"since": previous}
        else:
            walk = {}
        return cls(store, key, repo_id, partial, previous, walk, tips)

    def earlier(self, source: str) -> list[tuple[str, str]]:
        """(oid, path) of the objects that had findings in earlier scans, to read again."""
        if self.previous is None or self.store is None:
            return []
        return self.store.objects_with_findings(self.repo_id, self.key, source)


@dataclass(frozen=True)
class GitOpener:
    """Reads a shard of blobs through `git cat-file --batch`. It holds the repository's path, not
    the opened repository (whose stand-in git directory belongs to the process that made it): a
    worker process opens its own."""

    path: str
    trust_foreign_owner: bool = False

    def __call__(self, blobs: Sequence[Blob]) -> Iterator[Opened | Skip]:
        yield from read_git_blobs(open_repo(self.path, trust_foreign_owner=self.trust_foreign_owner), blobs)


def read_git_blobs(repo: GitRepo, blobs: Sequence[Blob]) -> Iterator[Opened | Skip]:
    by_oid = {b.key: b for b in blobs}
    items = [GitBlob(b.key, b.places[0].path, b.size) for b in blobs]
    for item in repo.read_blobs(items):
        if isinstance(item, GitWarning):
            yield item.to_skip()
        else:
            git_blob, read = item
            yield by_oid[git_blob.oid], read


class BlobHistory(Source):
    """Every blob reachable from every ref (or in a range), once, with every path and commit
    that put it there."""

    history = True

    def __init__(self, repo: GitRepo, plan: _Plan, all_objects: bool) -> None:
        self.repo, self.plan, self.all_objects = repo, plan, all_objects
        self.opener = GitOpener(str(repo.git_dir), repo.trust_foreign_owner)
        self.lfs_store = repo.git_dir / "lfs" / "objects"
        self.incremental = plan.previous is not None
        self.head_secrets: set[str] = set()  # secrets HEAD's blobs still hold, for the message source
        # Whether a secret is still at the tip is told by HEAD's tree. A push being received has
        # no tip yet (the server's HEAD is not where it goes), and reading that tree was a git
        # process in a row on every push: its findings' `in_head` stays unknown.
        self.tip_known = not isinstance(plan.walk.get("rev_range"), Pushed)
        self._places: dict[str, tuple[Place, ...]] = {}
        self.sizes: dict[str, int] = {}  # of every listed blob: the LFS source reads the small ones

    def read(self, blobs: Sequence[Blob]) -> Iterator[Opened | Skip]:
        return read_git_blobs(self.repo, blobs)  # in this process: the repository already opened

    def listing(self) -> Iterator[Blob | Skip]:
        listed: list[Blob] = []
        intro = None
        if not self.all_objects:
            try:  # one `git log --raw` walk lists every blob with every place that introduced it
                intro = self.repo.introductions(**self.plan.walk)
            except GitSourceError:
                pass  # damaged history: the rev-list walk below warns and goes on
        if intro is not None:
            sizes = self.repo.sizes(list(intro))
            # HEAD's blobs are decoded whole: whether a secret is still at the tip is told by them
            head = self.repo.head_blobs() if self.tip_known else frozenset()
            for oid, atts in intro.items():
                places = tuple(Place(a.path, "history", a.commit, None, a.author, a.date) for a in atts)  # oldest first
                listed.append(Blob(oid, sizes.get(oid, 0), places, base=None if oid in head else atts[0].base))
        else:
            for item in self.repo.blobs(all_objects=self.all_objects and not self.plan.partial, **self.plan.walk):
                if isinstance(item, GitWarning):
                    yield item.to_skip()
                else:  # attributed in `finish`, for the few blobs with findings
                    listed.append(Blob(item.oid, item.size, (Place(item.path, "history"),)))
        seen = {b.key for b in listed}
        earlier = [(oid, path) for oid, path in self.plan.earlier("history") if oid not in seen]
        if earlier:
            stored = self.plan.store.places(self.plan.repo_id, [oid for oid, _ in earlier])
            sizes = self.repo.sizes([oid for oid, _ in earlier])
            for oid, path in earlier:
                places = tuple(sorted((Place(p, "history", c, None, a, d) for p, c, a, d in stored.get(oid, ())),
                                      key=Place.age))  # fmt: skip
                listed.append(Blob(oid, sizes.get(oid, 0), places or (Place(path, "history"),)))
        for blob in listed:
            self._places[blob.key] = blob.places
            self.sizes[blob.key] = blob.size
            yield blob

    def finish(self, findings: list[Finding], scanned: list[tuple[str, int]]) -> list[Finding]:
        self._attribute(findings)
        if self.tip_known:
            head = self.repo.head_blobs()
            self.head_secrets = {f.secret_sha256 for f in findings if f.blob in head}
            for f in findings:
                f.in_head = f.secret_sha256 in self.head_secrets
        with_findings = {f.blob: f.path for f in findings}
        plan = self.plan
        if plan.store is not None and not plan.partial:
            plan.store.record_places(plan.repo_id, [(oid, p.path, p.commit, p.author, p.date)
                                                    for oid in with_findings for p in self._places.get(oid, ())
                                                    if p.commit])  # fmt: skip
            plan.store.record_findings_objects(plan.repo_id, plan.key, [(oid, path, "history") for oid, path in
                                                                        with_findings.items()],
                                               replace=plan.previous is None, source="history")  # fmt: skip
        # Every revision of a file is a new blob; a secret that sat in it across 40 revisions is
        # one leak at one place: reported once, where it first appeared.
        return _oldest(findings, key=lambda f: f.fingerprint)

    def _attribute(self, findings: list[Finding]) -> None:
        """A place listed without its commit (the damaged-history walk, or an earlier finding
        whose places were not stored): ask `git log --find-object`, for these few blobs only."""
        todo = sorted({(f.blob, f.path) for f in findings if f.commit is None and f.blob})
        if not todo:
            return
        found = self.repo.attribute(todo)
        for f in findings:
            att = found.get((f.blob, f.path))
            if f.commit is None and att is not None:
                f.commit, f.author, f.date = att.commit, att.author, att.date


class MessageHistory(Source):
    """Every commit and annotated-tag message of the walked history; a secret repeated in many
    messages (stash and merge commits repeat subjects) is one leak, at the oldest."""

    history = True

    def __init__(self, repo: GitRepo, plan: _Plan, blobs: BlobHistory) -> None:
        self.repo, self.plan, self.blobs = repo, plan, blobs
        self.opener = bytes_opener
        # a full walk asks the store nothing (`earlier` is empty): its git walk can run while
        # the blobs' walk does
        self.independent_listing = plan.previous is None

    def listing(self) -> Iterator[Blob | Skip]:
        pushed = self.plan.walk.get("rev_range")
        again = [oid for oid, _ in self.plan.earlier("commit-message")]
        if isinstance(pushed, Pushed):
            again += pushed.tips  # a pushed annotated tag brings its own message
        seen: set[str] = set()

        def streams() -> Iterator[Iterator[GitMessage | GitWarning]]:
            yield self.repo.messages(**self.plan.walk)
            # asked for after the walk, and only for what it did not yield: a pushed branch's tip
            # is a commit the walk read already (three git processes saved on every push)
            rest = [oid for oid in again if oid not in seen]
            if rest:
                yield self.repo.messages_of(rest)

        for stream in streams():
            for msg in stream:
                if isinstance(msg, GitWarning):
                    yield msg.to_skip()
                elif msg.oid not in seen:
                    seen.add(msg.oid)
                    path = TAG_MESSAGE_PATH if msg.kind == "tag" else COMMIT_MESSAGE_PATH
                    place = Place(path, "commit-message", msg.oid, None, msg.author, msg.date)
                    yield Blob(msg.oid, len(msg.message), (place,), msg.message)

    def finish(self, findings: list[Finding], scanned: list[tuple[str, int]]) -> list[Finding]:
        for f in findings:
            f.blob = None  # the id is the commit's, already in `commit`
            if self.blobs.tip_known:
                f.in_head = f.secret_sha256 in self.blobs.head_secrets
        findings = _oldest(findings, key=lambda f: (f.detector, f.secret_sha256))
        plan = self.plan
        if plan.store is not None and not plan.partial:
            plan.store.record_findings_objects(plan.repo_id, plan.key,
                                               [(f.commit, f.path, "commit-message") for f in findings],
                                               replace=plan.previous is None, source="commit-message")  # fmt: skip
            plan.store.record_repo_tips(plan.repo_id, plan.key, plan.tips)
        return findings


def worktree_source(repo: GitRepo, include_deps: bool) -> TreeSource:
    """The files git would consider (tracked, or untracked and not ignored) whose content is not
    HEAD's committed blob: untracked `.env`, local edits. HEAD's content is the history's."""
    wanted = set(repo.worktree_files())
    tree = repo.head_tree()

    def keep(entry: FileEntry) -> bool:
        return entry.path in wanted and not (entry.path in tree and _blob_id(entry, repo.object_format) == tree[entry.path])

    source = TreeSource(repo.path, include_deps=include_deps, keep=keep)
    source.lfs_store = repo.git_dir / "lfs" / "objects"
    return source


def _oldest(findings: list[Finding], key) -> list[Finding]:
    """One finding per key, the one at the oldest place (then commit id, line, for determinism)."""
    best: dict[object, Finding] = {}
    for f in findings:
        k = key(f)
        old = best.get(k)
        if old is None or (f.place().age(), f.line) < (old.place().age(), old.line):
            best[k] = f
    return list(best.values())


def _all_reachable(repo: GitRepo, tips: list[str]) -> bool:
    present = repo.existing(tips)
    if len(present) != len(tips):
        return False
    return repo.unreachable_from_refs(present) == []


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


__all__ = ["COMMIT_MESSAGE_PATH", "HistoryOptions", "git_sources", "worktree_source"]
