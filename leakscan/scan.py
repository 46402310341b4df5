"""Orchestration: sources → matcher → findings, spread over processes, deterministic output."""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .detectors import RuleSet
from .findings import Suppressions, dedupe, make_finding
from .locate import locate_stream
from .matcher import Matcher, bytes_reader
from .model import Finding, Origin, Skip
from .sources.files import FileEntry, walk

# Part of the scan-cache key: bump when what a scan of the same bytes yields changes.
SCANNER_FORMAT = 1
PARALLEL_MIN_BYTES = 16 << 20  # below this, starting processes costs more than it saves
BATCH_BYTES = 8 << 20


@dataclass
class ScanStats:
    files: int = 0
    objects: int = 0  # git blobs read from history
    incremental: bool = False  # only history new since the last scan was walked
    bytes: int = 0
    seconds: float = 0.0


@dataclass
class ScanResult:
    findings: list[Finding] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
    stats: ScanStats = field(default_factory=ScanStats)
    suppressed: int = 0


class Scanner:
    """One detector set compiled once; scans byte streams into findings."""

    def __init__(self, ruleset: RuleSet, engine: str | None = None) -> None:
        self.ruleset = ruleset
        self.matcher = Matcher(ruleset, engine)
        self._rules = ruleset.by_id
        self.cache_key = f"{ruleset.digest}.{SCANNER_FORMAT}"

    def scan_stream(self, read: Callable[[int], bytes], origin: Origin) -> list[Finding]:
        out = []
        for cand, loc in locate_stream(self.matcher, read):
            rule = self._rules[cand.rule_id]
            if loc.allowed or any(p.search(origin.path) for p in rule.exclude_path_regexes):
                continue
            out.append(make_finding(rule, cand, loc, origin))
        return out

    def scan_bytes(self, data: bytes, origin: Origin) -> list[Finding]:
        return self.scan_stream(bytes_reader(data), origin)

    def scan_file(self, entry: FileEntry) -> tuple[list[Finding], Skip | None]:
        try:
            with open(entry.abspath, "rb", buffering=0) as fh:
                return self.scan_stream(_reader(fh), Origin(entry.path)), None
        except OSError as exc:
            return [], Skip(entry.path, f"unreadable: {exc.strerror or exc}")


def _reader(fh) -> Callable[[int], bytes]:
    """read(n) that returns n bytes unless at end of file (raw reads may return fewer)."""

    def read(n: int) -> bytes:
        buf = fh.read(n)
        if not buf or len(buf) == n:
            return buf or b""
        parts = [buf]
        got = len(buf)
        while got < n:
            more = fh.read(n - got)
            if not more:
                break
            parts.append(more)
            got += len(more)
        return b"".join(parts)

    return read


# --- process pool -------------------------------------------------------------------------------
# Workers are forked after the scanner is built, so the compiled Hyperscan database is inherited
# rather than recompiled in every process.

_WORKER_SCANNER: Scanner | None = None


def worker_scanner() -> Scanner:
    """The scanner a forked worker inherited from `map_batches`."""
    assert _WORKER_SCANNER is not None
    return _WORKER_SCANNER


def _scan_batch(batch: list[FileEntry]) -> tuple[list[Finding], list[Skip]]:
    scanner = worker_scanner()
    findings, skipped = [], []
    for entry in batch:
        found, skip = scanner.scan_file(entry)
        findings.extend(found)
        if skip:
            skipped.append(skip)
    return findings, skipped


def _batches(entries: list[FileEntry]) -> Iterator[list[FileEntry]]:
    batch, size = [], 0
    for e in entries:
        batch.append(e)
        size += e.size
        if size >= BATCH_BYTES or len(batch) >= 512:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def map_batches(scanner: Scanner, func, batches: Iterable, jobs: int) -> Iterator:
    """Run `func(batch)` over batches, in forked workers sharing `scanner` when jobs > 1,
    yielding results in batch order (so output is deterministic)."""
    global _WORKER_SCANNER
    _WORKER_SCANNER = scanner
    if jobs <= 1:
        yield from map(func, batches)
        return
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(jobs) as pool:
        yield from pool.imap(func, batches)


def default_jobs() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def scan_tree(root: Path, scanner: Scanner, *, jobs: int | None = None,
              suppressions: Suppressions | None = None, include_deps: bool = False) -> ScanResult:  # fmt: skip
    started = time.monotonic()
    result = ScanResult()
    entries: list[FileEntry] = []
    for item in walk(root, include_deps=include_deps):
        if isinstance(item, Skip):
            result.skipped.append(item)
        else:
            entries.append(item)
    total = sum(e.size for e in entries)
    if jobs is None:  # automatic: only where processes pay for themselves
        jobs = default_jobs() if total >= PARALLEL_MIN_BYTES else 1
    found: list[Finding] = []
    for findings, skipped in map_batches(scanner, _scan_batch, _batches(entries), jobs):
        found.extend(findings)
        result.skipped.extend(skipped)
    result.stats = ScanStats(files=len(entries), bytes=total)
    finish(result, found, suppressions)
    result.stats.seconds = time.monotonic() - started
    return result


def finish(result: ScanResult, found: list[Finding], suppressions: Suppressions | None) -> None:
    unique = dedupe(found)
    if suppressions:
        kept = [f for f in unique if not suppressions.suppressed(f)]
        result.suppressed = len(unique) - len(kept)
        unique = kept
    result.findings = unique
    result.skipped.sort(key=lambda s: (s.path, s.container or ""))
