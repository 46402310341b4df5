"""The one driver: sources → decoders → matcher → findings → verify → report/store.

Every surface (`scan`, `repo`, `hook`, `serve`, `sweep`) hands `run` its sources; nothing else
walks blobs, shards them over processes, consults the scan cache or feeds the verifier.

For each source, in order:
  1. its listing: blobs (content ids, sizes, every place each appears at) and skips;
  2. the scan cache drops blobs a scan with the same cache key found nothing in;
  3. each blob is read once and matched once (`Scanner.scan_blob`), in forked worker processes
     sharing the compiled matcher when the source can be read there and the work is large;
     findings go to the verifier as they come;
  4. the source's `finish` adds what needs the whole result (attribution, `in_head`, links) and
     the store remembers what was scanned.
Then findings are deduplicated and suppressions applied, and verification is awaited.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from .findings import Suppressions, dedupe
from .model import Finding, Skip
from .scan import Scanner
from .sources.base import Blob, Opener, Source
from .versions import Versions, file_order

PARALLEL_MIN_BYTES = 16 << 20  # below this, starting processes costs more than it saves
SHARDS_PER_WORKER = 4  # more shards than workers: results (and their verification) flow early


@dataclass
class ScanStats:
    files: int = 0  # blobs read from sources that are not git history
    objects: int = 0  # git objects read (blobs and messages)
    incremental: bool = False  # a source walked only what is new since the last scan
    bytes: int = 0
    seconds: float = 0.0


@dataclass
class ScanResult:
    findings: list[Finding] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
    stats: ScanStats = field(default_factory=ScanStats)
    suppressed: int = 0

    def __iter__(self) -> Iterator[Finding]:
        return iter(self.findings)


class Verifier(Protocol):
    def submit(self, findings: Iterable[Finding]) -> None: ...
    def close(self) -> None: ...


@dataclass
class Batch:
    """What scanning a run of blobs gave; a worker process returns one of these."""

    found: list[Finding] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
    scanned: list[tuple[str, int]] = field(default_factory=list)  # (blob key, candidates) for the cache
    blobs: int = 0
    bytes: int = 0

    def take(self, scanner: Scanner, opened: Iterable[tuple[Blob, Callable[[int], bytes]] | Skip],
             lfs_store: Path | None) -> Batch:  # fmt: skip
        versions = Versions()
        for item in opened:
            if isinstance(item, Skip):
                self.skipped.append(item)
                continue
            blob, read = item
            before = versions.before(blob)
            try:
                got = scanner.scan_blob(read, blob.places, lfs_store=lfs_store, before=before)
            except OSError as exc:  # a file that became unreadable midway (a vanished mount, EIO)
                self.skipped.append(Skip(blob.places[0].path, f"unreadable: {exc.strerror or exc}"))
                continue
            if blob.key is not None:
                for f in got.findings:
                    f.blob = blob.key
                # candidates before path rules: a blob whose secrets one path excludes must be
                # read again when it turns up at another path
                self.scanned.append((blob.key, got.candidates))
            versions.keep(blob, got.version)
            self.found += got.findings
            self.skipped += got.skipped
            self.blobs += 1
            self.bytes += blob.size
        return self

    def merge(self, other: Batch) -> None:
        self.found += other.found
        self.skipped += other.skipped
        self.scanned += other.scanned
        self.blobs += other.blobs
        self.bytes += other.bytes


def run(sources: Sequence[Source], scanner: Scanner, *, store=None, jobs: int | None = None,
        suppressions: Suppressions | None = None, verifier: Verifier | None = None,
        scope=None) -> ScanResult:  # fmt: skip
    """Scan `sources` in order into one result. `jobs`: worker processes (None: all cores, for
    work over PARALLEL_MIN_BYTES). The verifier sees unsuppressed findings as they are found and
    is closed (its last verdict awaited) before this returns. `scope` (a `config.Scope`) drops
    excluded places and skips blobs over the size limit, before anything is read."""
    started = time.monotonic()
    result = ScanResult()
    found: list[Finding] = []
    revoked: set[str] = set()
    if store is not None:
        # triage in the store sticks: a false positive is suppressed like an ignore-file entry
        # (and never verified), a revoked finding is no longer reported as live
        marked = store.triaged()
        revoked = marked["revoked"]
        if marked["false-positive"]:
            base = suppressions or Suppressions()
            suppressions = Suppressions(base.fingerprints | marked["false-positive"], base.baseline)
    notify = None
    if verifier is not None:
        notify = lambda fs: verifier.submit(_unsuppressed(fs, suppressions))  # noqa: E731
    listings = _Listings(sources, forking=(jobs or default_jobs()) > 1)
    # the next source's listing and, when small, its scan, done while workers scan this one
    early: dict[int, tuple[list[Skip], list[Blob], Batch | None]] = {}

    def todo(i: int) -> tuple[list[Skip], list[Blob]]:
        skipped: list[Skip] = []
        blobs: list[Blob] = []
        for item in listings.take(i):
            if scope is not None and not isinstance(item, Skip):
                item = scope.narrow(item)
                if item is None:
                    continue
            (skipped if isinstance(item, Skip) else blobs).append(item)
        keys = [b.key for b in blobs if b.key is not None]
        if store is not None and keys:
            known = store.scanned_objects(scanner.cache_key, keys)
            blobs = [b for b in blobs if b.key is None or known.get(b.key, 1) > 0]
        return skipped, file_order(blobs)

    def meanwhile(j: int) -> None:
        skipped, blobs = todo(j)
        serial = not _parallel(sources[j], blobs, jobs)
        early[j] = (skipped, blobs, _scan(sources[j], scanner, blobs, jobs, notify) if serial else None)

    try:
        for i, source in enumerate(sources):
            if i in early:
                skipped, blobs, batch = early.pop(i)
            else:
                skipped, blobs = todo(i)
                batch = None
            result.skipped += skipped
            if batch is None:
                ahead = i + 1 < len(sources) and listings.ready(i + 1)
                batch = _scan(source, scanner, blobs, jobs, notify, (lambda: meanwhile(i + 1)) if ahead else None)
            if store is not None and batch.scanned:
                store.record_objects(scanner.cache_key, batch.scanned)
            found += source.finish(batch.found, batch.scanned)
            result.skipped += batch.skipped
            if source.history:
                result.stats.objects += batch.blobs
            else:
                result.stats.files += batch.blobs
            result.stats.bytes += batch.bytes
            result.stats.incremental |= source.incremental
    finally:
        listings.close()
        if verifier is not None:
            verifier.close()
    unique = dedupe(found)
    if suppressions:
        kept = [f for f in unique if not suppressions.suppressed(f)]
        result.suppressed = len(unique) - len(kept)
        unique = kept
    mark_revoked(unique, revoked)
    result.findings = unique
    result.skipped.sort(key=lambda s: (s.path, s.container or ""))
    result.stats.seconds = time.monotonic() - started
    return result


def mark_revoked(findings: Iterable[Finding], revoked: set[str]) -> None:
    """Findings people marked revoked are not reported as live: their state is `revoked` (a
    provider that still accepts one is said so in the reason)."""
    for f in findings:
        if f.fingerprint in revoked and f.verification not in ("invalid", "revoked"):
            if f.verification == "verified":
                f.verification_reason = "marked revoked in triage, yet the provider still accepted it"
            f.verification = "revoked"


class _Listings:
    """Each source's listing, the independent ones (`Source.independent_listing`) taken
    alongside the first source's: two walks of a history keep both cores busy.

    With `forking` (worker processes may be forked to scan), each is taken in a process of its
    own, forked now, before this process starts any thread or git process, and it hands its
    listing back through a pipe. A thread could not go on past the first listing: a fork copies
    no running thread, and could copy a pipe end mid-`Popen`, keeping a git process from its end
    of input. Waiting for such threads kept the workers from starting until both walks were
    done (on free-programming-books the message walk took as long as the blob walk, with one
    core idle). Without `forking` (one job: a pre-receive hook), a thread saves the fork; so it
    does when another thread runs (a verifier's): a fork copies what that thread's frames hold
    but not the thread, and the child drops it at once (an HTTP session in use is then reported
    unclosed there)."""

    def __init__(self, sources: Sequence[Source], forking: bool = False) -> None:
        import threading

        self.sources = sources
        self.ahead: dict[int, _Ahead] = {}
        forking = forking and threading.active_count() == 1
        for i, source in enumerate(sources):
            if i > 0 and source.independent_listing:
                self.ahead[i] = _Ahead(source, forking)

    def ready(self, i: int) -> bool:
        """Whether listing `i` is being taken already (and may be taken before the ones before it)."""
        return i in self.ahead

    def take(self, i: int) -> list:
        if i in self.ahead:
            return self.ahead.pop(i).result()
        items = list(self.sources[i].listing())
        if i == 0:
            for ahead in self.ahead.values():
                ahead.settle()
        return items

    def close(self) -> None:
        for ahead in self.ahead.values():
            ahead.abandon()
        self.ahead.clear()


class _Ahead:
    """One listing taken alongside: in a thread, or in a forked process (see `_Listings`)."""

    def __init__(self, source: Source, forking: bool) -> None:
        self.box: list = []
        self.process = self.thread = None
        if forking:
            import multiprocessing

            ctx = multiprocessing.get_context("fork")
            self.receive, send = ctx.Pipe(duplex=False)
            self.process = ctx.Process(target=_list_to, args=(source, send), name="leakscan-listing", daemon=True)
            self.process.start()
            send.close()
        else:
            import threading

            self.thread = threading.Thread(target=_list_into, args=(source, self.box), name="leakscan-listing", daemon=True)
            self.thread.start()

    def settle(self) -> None:
        """Before a fork: a thread must have ended (a process goes on)."""
        if self.thread is not None:
            self.thread.join()

    def result(self) -> list:
        if self.process is not None:
            try:
                self.box.append(self.receive.recv())
            except EOFError:
                pass  # the process ended without sending: its exit code says how
            finally:
                self.receive.close()
            self.process.join()
            if not self.box:
                self.box.append(RuntimeError(f"the listing process ended without a listing (exit code {self.process.exitcode})"))
        else:
            self.settle()
        if isinstance(self.box[0], BaseException):
            raise self.box[0]
        return self.box[0]

    def abandon(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.join()
            self.receive.close()
        else:
            self.settle()


def _list_into(source: Source, box: list) -> None:
    try:
        box.append(list(source.listing()))
    except BaseException as exc:  # re-raised where the pipeline takes this listing
        box.append(exc)


def _list_to(source: Source, send) -> None:
    """In a forked process: the listing, or what stopped it, sent back (see `_Ahead`)."""
    box: list = []
    _list_into(source, box)
    try:
        send.send(box[0])
    except Exception as exc:  # an exception that does not pickle still says what it was
        send.send(RuntimeError(f"{type(box[0]).__name__}: {box[0]}" if isinstance(box[0], BaseException) else str(exc)))
    finally:
        send.close()


def _parallel(source: Source, blobs: list[Blob], jobs: int | None) -> bool:
    workers = jobs or default_jobs()
    return source.opener is not None and workers > 1 and len(blobs) > 1 and (
        jobs is not None or sum(b.size for b in blobs) >= PARALLEL_MIN_BYTES)


def _scan(source: Source, scanner: Scanner, blobs: list[Blob], jobs: int | None,
          notify: Callable[[list[Finding]], None] | None, meanwhile: Callable[[], None] | None = None) -> Batch:  # fmt: skip
    """`meanwhile`: work for this process while its workers scan (run in any case)."""
    lfs_store = source.lfs_store
    batch = Batch()
    if not _parallel(source, blobs, jobs):
        batch.take(scanner, source.read(blobs), lfs_store)
        if notify and batch.found:
            notify(batch.found)
        if meanwhile is not None:
            meanwhile()
        return batch
    workers = jobs or default_jobs()
    shards = [(source.opener, part, lfs_store) for part in _shards(blobs, workers * SHARDS_PER_WORKER)]
    for part in map_batches(scanner, _scan_shard, shards, workers, meanwhile):
        batch.merge(part)
        if notify and part.found:
            notify(part.found)
    return batch


def _unsuppressed(findings: Iterable[Finding], suppressions: Suppressions | None) -> list[Finding]:
    return [f for f in findings if not suppressions or not suppressions.suppressed(f)]


def _shards(blobs: list[Blob], n: int) -> list[list[Blob]]:
    """`n` contiguous runs of about equal bytes: neighbours in listing order share delta bases,
    so each worker's `git cat-file` keeps its cache warm. A run starts only where a piece of a
    file's history does (`versions.file_order`), so a blob meets its earlier version whatever
    the number of workers."""
    total = sum(b.size for b in blobs) or 1
    shards: list[list[Blob]] = [[] for _ in range(n)]
    acc = at = 0
    for blob in blobs:
        if blob.base is None:
            at = min(n - 1, acc * n // total)
        shards[at].append(blob)
        acc += blob.size
    return [s for s in shards if s]


def _scan_shard(job: tuple[Opener, list[Blob], Path | None]) -> Batch:
    opener, blobs, lfs_store = job
    return Batch().take(_worker_scanner(), opener(blobs), lfs_store)


# Workers are forked after the scanner is built, so the compiled Hyperscan database is inherited
# rather than recompiled in every process; so are the batches (a history's is a list of a
# hundred thousand blobs with their places, which pickling to the workers cost as much as
# scanning a small repository), each worker told only which batch is next.
_WORKER_SCANNER: Scanner | None = None
_WORKER_BATCHES: tuple[Callable, list] | None = None


def _worker_scanner() -> Scanner:
    assert _WORKER_SCANNER is not None
    return _WORKER_SCANNER


def map_batches(scanner: Scanner, func, batches: Iterable, jobs: int,
                meanwhile: Callable[[], None] | None = None) -> Iterator:  # fmt: skip
    """`func(batch)` over batches, in forked workers sharing `scanner` when jobs > 1, results in
    batch order (so output is deterministic). `meanwhile` runs here once the workers have their
    batches (after them all when jobs is 1)."""
    global _WORKER_SCANNER, _WORKER_BATCHES
    _WORKER_SCANNER = scanner
    if jobs <= 1:
        yield from map(func, batches)
        if meanwhile is not None:
            meanwhile()
        return
    _WORKER_BATCHES = (func, list(batches))
    import multiprocessing  # a pool is rare in a pre-receive hook, which waits on every import

    ctx = multiprocessing.get_context("fork")
    try:
        with ctx.Pool(jobs) as pool:
            results = pool.imap(_forked_batch, range(len(_WORKER_BATCHES[1])))
            if meanwhile is not None:
                meanwhile()
            yield from results
    finally:
        _WORKER_BATCHES = None


def _forked_batch(i: int):
    assert _WORKER_BATCHES is not None
    func, batches = _WORKER_BATCHES
    return func(batches[i])


def default_jobs() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def scan_hub_repo(repo, scanner: Scanner, *, store_path: Path | None = None, verify: bool = True,
                  discussions: bool = True, max_bytes: int | None = None, lfs=None,
                  suppressions: Suppressions | None = None, scope=None) -> ScanResult:  # fmt: skip
    """One Hub repository as the long-running surfaces (`serve`, `sweep`) scan it: the mirror
    fetched incrementally, the scan cache and verdicts from the store at `store_path`, verified
    unless told not to, in this process. Raises HubError (and GitSourceError) for the caller to
    retry or park."""
    from .sources.hub import hub_sources
    from .store import Store

    store = Store(store_path) if store_path else None
    try:
        # the mirror is fetched first: a repository that cannot be had starts no verifier
        key = scope.history_key(scanner.cache_key) if scope is not None else scanner.cache_key
        sources = hub_sources(repo, store=store, cache_key=key, discussions=discussions,
                              max_bytes=max_bytes, lfs=lfs)  # fmt: skip
        verifier = None
        if verify:
            from .verify.background import BackgroundVerifier

            verifier = BackgroundVerifier(scanner.ruleset, store_path=store_path)
        return run(sources, scanner, store=store, jobs=1, verifier=verifier, suppressions=suppressions, scope=scope)
    finally:
        if store is not None:
            store.close()
