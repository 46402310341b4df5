"""Orchestration: sources → matcher → findings, spread over processes, deterministic output."""

from __future__ import annotations

import base64
import binascii
import hashlib
import multiprocessing
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from .detectors import RuleSet
from .findings import Suppressions, dedupe, make_finding
from .locate import LineCounter, locate_bytes, locate_stream
from .decoders import Limits, decode, is_lfs_pointer, lfs_oid, sniff
from .decoders.stream import EncodedStream
from .matcher import CHUNK_SIZE, Chunk, ChunkFeed, Matcher, bytes_reader
from .model import Candidate, Finding, Location, Origin, Skip
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


@dataclass
class Scanned:
    """What scanning one blob gave."""

    findings: list[Finding] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)


WHOLE_BLOB = CHUNK_SIZE  # blobs up to this size are read whole, so their layers can be decoded
_STRUCTURED = frozenset({"zip", "tar", "gzip", "bz2", "xz", "notebook", "pickle", "safetensors", "gguf"})


class Scanner:
    """One detector set compiled once; scans byte streams into findings, decoded layers
    (archives, notebooks, pickles, encodings…) included unless `limits` is None."""

    def __init__(self, ruleset: RuleSet, engine: str | None = None, limits: Limits | None = Limits()) -> None:
        self.ruleset = ruleset
        self.matcher = Matcher(ruleset, engine)
        self.limits = limits
        self._rules = ruleset.by_id
        decoding = "raw" if limits is None else hashlib.sha256(repr(limits).encode()).hexdigest()[:8]
        self.cache_key = f"{ruleset.digest}.{SCANNER_FORMAT}.{decoding}"

    def scan_stream(self, read: Callable[[int], bytes], origin: Origin, *,
                    lfs_store: Path | None = None) -> Scanned:  # fmt: skip
        """Small blobs and structured formats (within the decoded-bytes limit) are read whole
        and decoded; anything else is streamed through the matcher in chunks."""
        head = read(WHOLE_BLOB)
        if len(head) < WHOLE_BLOB:
            return self._scan_whole(head, origin, lfs_store)
        if self.limits is not None and sniff(head, origin.path) in _STRUCTURED:
            budget = self.limits.max_decoded_bytes
            rest = read(budget - len(head) + 1) if budget > len(head) else b""
            data = head + rest
            if len(data) <= budget:
                return self._scan_whole(data, origin, lfs_store)
            why = f"too large to decode: over the {budget >> 20} MiB decoded-bytes limit; scanned as raw bytes"
            return Scanned(self._raw(_chain(data, read), origin), [Skip(origin.path, why, origin.container)])
        if self.limits is None:
            return Scanned(self._raw(_chain(head, read), origin))
        return self._scan_text_stream(head, read, origin)

    def _raw(self, read: Callable[[int], bytes], origin: Origin) -> list[Finding]:
        return self._findings(locate_stream(self.matcher, read), origin)

    def _raw_bytes(self, data: bytes, origin: Origin) -> list[Finding]:
        return self._findings(locate_bytes(self.matcher, data), origin)

    def _findings(self, located: Iterable[tuple[Candidate, Location]], origin: Origin) -> list[Finding]:
        out = []
        for cand, loc in located:
            rule = self._rules[cand.rule_id]
            if loc.allowed or any(p.search(origin.path) for p in rule.exclude_path_regexes):
                continue
            out.append(make_finding(rule, cand, loc, origin))
        return out

    def _scan_whole(self, data: bytes, origin: Origin, lfs_store: Path | None) -> Scanned:
        if self.limits is None:
            return Scanned(self._raw_bytes(data, origin))
        if is_lfs_pointer(data):  # its oid is not a secret; the content it names may hold one
            return self._scan_lfs_object(lfs_oid(data), origin, lfs_store)
        result = Scanned(self._raw_bytes(data, origin))
        layered: list[Finding] = []
        for item in decode(origin.path, data, self.limits):
            where = _join(origin.container, item.container)
            if isinstance(item, Skip):
                result.skipped.append(Skip(origin.path, item.reason, where))
            else:
                layered += self._raw_bytes(item.data, replace(origin, container=where))
        result.findings = _outer_only(result.findings, layered) + layered
        return result

    def _scan_text_stream(self, head: bytes, read: Callable[[int], bytes], origin: Origin) -> Scanned:
        """A text blob too big to hold: raw bytes and encoded text scanned as they stream past."""
        result, layered = Scanned(), []
        stream = _TextStream(self, origin, 0, result, layered)
        data = head
        while data:
            stream.feed(data)
            data = read(CHUNK_SIZE)
        stream.close()
        result.findings = _outer_only(result.findings, layered) + layered
        result.skipped = list(dict.fromkeys(result.skipped))  # windows hit the same limits alike
        return result

    def _scan_lfs_object(self, oid: str | None, origin: Origin, lfs_store: Path | None) -> Scanned:
        if oid is None or lfs_store is None:
            return Scanned()
        path = lfs_store / oid[:2] / oid[2:4] / oid
        try:
            with open(path, "rb", buffering=0) as fh:
                return self.scan_stream(_reader(fh), replace(origin, container=_join(origin.container, "lfs")))
        except FileNotFoundError:
            return Scanned()  # content not fetched (GIT_LFS_SKIP_SMUDGE): only the pointer exists
        except OSError as exc:
            return Scanned([], [Skip(origin.path, f"LFS object unreadable: {exc.strerror or exc}", origin.container)])

    def scan_bytes(self, data: bytes, origin: Origin) -> Scanned:
        return self.scan_stream(bytes_reader(data), origin)

    def scan_file(self, entry: FileEntry, lfs_store: Path | None = None) -> Scanned:
        try:
            with open(entry.abspath, "rb", buffering=0) as fh:
                return self.scan_stream(_reader(fh), Origin(entry.path), lfs_store=lfs_store)
        except OSError as exc:
            return Scanned([], [Skip(entry.path, f"unreadable: {exc.strerror or exc}")])


class _TextStream:
    """One text stream (a blob, or a layer decoded as it streams, see decoders.stream): its raw
    bytes through the matcher chunk by chunk, and each chunk shown to the encoded-text decoder
    as a window. Its findings go to `result` (the blob's own) or `layered` (a decoded layer's)."""

    def __init__(self, scanner: Scanner, origin: Origin, enc: int, result: Scanned, layered: list[Finding]) -> None:
        assert scanner.limits is not None
        self.scanner, self.origin, self.enc = scanner, origin, enc
        self.result, self.layered = result, layered
        self.found = result.findings if enc == 0 else layered
        self.chunks = ChunkFeed(scanner.matcher)
        self.lines = LineCounter()
        self.encoded = EncodedStream(origin.path, enc, scanner.limits, self._nested)

    def _nested(self, name: str) -> _TextStream:
        inner = replace(self.origin, container=_join(self.origin.container, name))
        return _TextStream(self.scanner, inner, self.enc + 1, self.result, self.layered)

    def feed(self, data: bytes) -> None:
        for chunk in self.chunks.feed(data):
            self._chunk(chunk)

    def close(self) -> None:
        for chunk in self.chunks.close():
            self._chunk(chunk)

    def _chunk(self, c: Chunk) -> None:
        self.found += self.scanner._findings(self.lines.locate(c.data, c.offset, c.candidates), self.origin)
        for item in self.encoded.window(c.data, c.offset, c.own, c.final):
            where = _join(self.origin.container, item.container)
            if isinstance(item, Skip):
                self.result.skipped.append(Skip(self.origin.path, item.reason, where))
            else:
                self.layered += self.scanner._raw_bytes(item.data, replace(self.origin, container=where))


def _outer_only(found: list[Finding], layered: list[Finding]) -> list[Finding]:
    """A secret found in a decoded layer is reported there (with its container), not again as
    the raw bytes of the notebook or archive that hold it, nor as the "generic" high-entropy
    base64/hex text it was encoded into."""
    if not layered:
        return found
    inner = {(f.detector, f.secret_sha256) for f in layered}
    secrets = _Secrets(f.secret.encode() for f in layered)
    return [f for f in found if (f.detector, f.secret_sha256) not in inner
            and not (f.generic and _encodes_any(f.secret, secrets))]  # fmt: skip


class _Secrets:
    """Whether a short text holds any of many secrets, in time linear in the text's length: the
    secrets are indexed by their first k bytes (k: the shortest secret's length) and by length,
    so each position of the text costs one lookup, plus one per distinct length of the secrets
    that begin there. Testing each secret in turn cost the product of the two counts, which an
    attacker chooses."""

    def __init__(self, secrets: Iterable[bytes]) -> None:
        self.index: dict[bytes, dict[int, set[bytes]]] = {}
        unique = set(secrets)
        self.k = min(map(len, unique), default=0)
        for s in unique:
            self.index.setdefault(s[: self.k], {}).setdefault(len(s), set()).add(s)

    def found_in(self, text: bytes) -> bool:
        k, index = self.k, self.index
        if not k:
            return bool(index)  # the empty secret is in everything
        for i in range(len(text) - k + 1):
            by_length = index.get(text[i : i + k])
            if by_length and any(text[i : i + n] in group for n, group in by_length.items()):
                return True
        return False


def _encodes_any(text: str, secrets: _Secrets) -> bool:
    """Whether `text` is base64, base64url or hex of something holding one of `secrets`."""
    raw = text.encode()
    decoded = []
    for decoder in (base64.b64decode, base64.urlsafe_b64decode):
        try:
            decoded.append(decoder(raw + b"=" * (-len(raw) % 4)))
        except (binascii.Error, ValueError):
            pass
    try:
        decoded.append(bytes.fromhex(text))
    except ValueError:
        pass
    return any(secrets.found_in(d) for d in decoded)


def _join(outer: str | None, inner: str | None) -> str | None:
    return "!".join(p for p in (outer, inner) if p) or None


def _chain(head: bytes, read: Callable[[int], bytes]) -> Callable[[int], bytes]:
    """read(n) over `head` then whatever `read` still gives."""
    buf = bytearray(head)

    def chained(n: int) -> bytes:
        while len(buf) < n:
            more = read(max(n - len(buf), 1 << 20))
            if not more:
                break
            buf.extend(more)
        out = bytes(buf[:n])
        del buf[:n]
        return out

    return chained


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
        got = scanner.scan_file(entry)
        findings += got.findings
        skipped += got.skipped
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
              suppressions: Suppressions | None = None, include_deps: bool = False,
              on_findings: Callable[[list[Finding]], None] | None = None) -> ScanResult:  # fmt: skip
    """`on_findings` sees findings as they are found (before dedupe), so verification can
    start while the scan goes on; suppressed ones are never passed to it."""
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
        if on_findings:
            on_findings(unsuppressed(findings, suppressions))
    result.stats = ScanStats(files=len(entries), bytes=total)
    finish(result, found, suppressions)
    result.stats.seconds = time.monotonic() - started
    return result


def unsuppressed(findings: list[Finding], suppressions: Suppressions | None) -> list[Finding]:
    return [f for f in findings if not suppressions or not suppressions.suppressed(f)]


def finish(result: ScanResult, found: list[Finding], suppressions: Suppressions | None) -> None:
    unique = dedupe(found)
    if suppressions:
        kept = [f for f in unique if not suppressions.suppressed(f)]
        result.suppressed = len(unique) - len(kept)
        unique = kept
    result.findings = unique
    result.skipped.sort(key=lambda s: (s.path, s.container or ""))
