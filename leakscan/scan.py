"""The scanner: one blob's bytes → decoders → matcher → findings at each of its places.

A blob is read and matched once however many places hold it. What depends on a place is decided
per place afterwards: a rule's `exclude_paths`, and which decoder a path's extension selects
(places whose paths select different decoders are decoded once each). A finding names the oldest
place its rule allows, and lists the other allowed places in `also_at`.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from . import __version__
from .detectors import RuleSet
from .findings import fingerprint, make_finding, unsafe_finding
from .locate import LineCounter, locate_bytes, locate_stream
from .decoders import Layer, Limits, Seen, Unsafe, decode, is_lfs_pointer, lfs_oid, no_text_format, no_text_reason, plain_text, sniff
from .decoders.stream import EncodedStream
from .matcher import CHUNK_SIZE, Chunk, ChunkFeed, Matcher, bytes_reader, file_reader
from .versions import Version, changed_spans
from .model import Candidate, Finding, Location, Place, Skip


@dataclass
class Scanned:
    """What scanning one blob gave."""

    findings: list[Finding] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
    candidates: int = 0  # findings before path rules: what the scan cache remembers of a blob
    version: Version | None = None  # a text blob read whole, as the next version meets it


WHOLE_BLOB = CHUNK_SIZE  # blobs up to this size are read whole, so their layers can be decoded
MAX_LOCATED = 200_000  # layers whose matches are kept for when their archive member is met again
_STRUCTURED = frozenset({"zip", "tar", "gzip", "bz2", "xz", "notebook", "pickle", "safetensors", "gguf", "7z", "npy", "hdf5",
                         "zlib"})


class Scanner:
    """One detector set compiled once; scans byte streams into findings, decoded layers
    (archives, notebooks, pickles, encodings…) included unless `limits` is None. Model files
    that run code when loaded are findings too unless `model_scan` is off (they need decoding);
    imports not on the allowlist only with `pickle_unknown`."""

    def __init__(self, ruleset: RuleSet, engine: str | None = None, limits: Limits | None = Limits(), *,
                 model_scan: bool = True, pickle_unknown: bool = False) -> None:  # fmt: skip
        self.ruleset = ruleset
        self.matcher = Matcher(ruleset, engine)
        self.limits = limits
        self.model_scan = model_scan and limits is not None
        self.pickle_unknown = pickle_unknown
        self._rules = ruleset.by_id
        self.seen = Seen()  # archive members decoded so far in this process
        self._located: dict[tuple, list[tuple[Candidate, Location]]] = {}  # what `Seen`'s layers matched

    @functools.cached_property
    def cache_key(self) -> str:
        """What the scan cache files results under (asked only when there is one: hashing the
        code costs a pre-receive hook milliseconds). What a scan of the same bytes yields
        depends on the detectors, the limits in force and the code that decodes and matches: an
        upgrade must never reuse what an older one found."""
        decoding = "raw" if self.limits is None else repr(self.limits)
        decoding += f"\0models={int(self.model_scan)}{int(self.pickle_unknown)}"
        key = f"{__version__}\0{_code_digest()}\0{self.ruleset.digest}\0{decoding}\0{self.matcher.engine}"
        return hashlib.sha256(key.encode()).hexdigest()[:32]

    def scan_stream(self, read: Callable[[int], bytes], origin: Place, *,
                    lfs_store: Path | None = None, before: Version | None = None) -> Scanned:  # fmt: skip
        """Small blobs and structured formats (within the decoded-bytes limit) are read whole
        and decoded; anything else is streamed through the matcher in chunks. `before`: an
        earlier version of a small text blob, already scanned at this path in this pass: only
        what changed since is searched for encoded text and confirmed raw (see `versions`)."""
        head = read(WHOLE_BLOB)
        if len(head) < WHOLE_BLOB:
            return self._scan_whole(head, origin, lfs_store, before)
        fmt = sniff(head, origin.path) if self.limits is not None else None
        if fmt in _STRUCTURED:
            budget = self.limits.max_decoded_bytes
            rest = read(budget - len(head) + 1) if budget >= len(head) else b""
            data = head + rest
            if len(data) <= budget:
                return self._scan_whole(data, origin, lfs_store)
            why = f"too large to decode: over the {budget >> 20} MiB decoded-bytes limit; scanned as raw bytes"
            unsafe = []
            if self.model_scan and fmt in ("zip", "pickle"):
                # torch.save writes data.pkl first, legacy torch files their pickles before the
                # storages: a checkpoint of any size shows its pickles early
                unsafe = self._unsafe_in(data[:budget], origin)
                why += f", its pickles read from the first {budget >> 20} MiB"
            return Scanned(self._raw(_chain(data, read), origin) + unsafe, [Skip(origin.path, why, origin.container)])
        if self.limits is None:
            return Scanned(self._raw(_chain(head, read), origin))
        kind = no_text_format(head)
        if kind is not None:
            return Scanned(self._raw(_chain(head, read), origin), [Skip(origin.path, no_text_reason(kind), origin.container)])
        return self._scan_text_stream(head, read, origin)

    def _raw(self, read: Callable[[int], bytes], origin: Place) -> list[Finding]:
        return self._findings(locate_stream(self.matcher, read), origin)

    def _raw_bytes(self, data: bytes, origin: Place, changed: Sequence[tuple[int, int]] | None = None) -> list[Finding]:
        return self._findings(locate_bytes(self.matcher, data, changed), origin)

    def _findings(self, located: Iterable[tuple[Candidate, Location]], origin: Place) -> list[Finding]:
        """Findings at `origin`, path rules not applied yet: `scan_blob` applies them per place."""
        return [make_finding(self._rules[c.rule_id], c, loc, origin) for c, loc in located if not loc.allowed]

    def scan_blob(self, read: Callable[[int], bytes], places: Sequence[Place], *,
                  lfs_store: Path | None = None, before: Version | None = None) -> Scanned:  # fmt: skip
        """One blob, read once, at every place it appears (oldest first). `before`: see
        `scan_stream`."""
        groups: dict[tuple, list[Place]] = {}
        for place in places:
            groups.setdefault(_decoder_choice(place.path), []).append(place)
        if len(groups) == 1:
            got = self.scan_stream(read, places[0], lfs_store=lfs_store, before=before)
            return Scanned(self._at_places(got.findings, places), got.skipped, len(got.findings), got.version)
        # Paths that choose different decoders (`x.ipynb` and `x.json` of the same bytes): the
        # bytes are matched and decoded once per choice, within the decoded-bytes budget.
        budget = self.limits.max_decoded_bytes if self.limits else CHUNK_SIZE
        data = read(budget + 1)
        out = Scanned()
        if len(data) > budget:
            first = next(iter(groups.values()))
            out.skipped.append(Skip(first[0].path, f"held at paths that choose different decoders and over the "
                                    f"{budget >> 20} MiB decoded-bytes limit: decoded as {first[0].path} only"))  # fmt: skip
            got = self.scan_stream(_chain(data, read), first[0], lfs_store=lfs_store)
            return Scanned(self._at_places(got.findings, places), out.skipped + got.skipped, len(got.findings))
        for group in groups.values():
            got = self.scan_stream(bytes_reader(data), group[0], lfs_store=lfs_store)
            out.findings += self._at_places(got.findings, group)
            out.skipped += got.skipped
            out.candidates += len(got.findings)
        return Scanned(_merge_places(out.findings), out.skipped, out.candidates)

    def _at_places(self, findings: list[Finding], places: Sequence[Place]) -> list[Finding]:
        """Each finding (made at places[0]) moved to the oldest place its rule allows, the other
        allowed places in `also_at`; dropped when its rule allows none."""
        out = []
        for f in findings:
            rule = self._rules.get(f.detector)  # unsafe model files have no rule of the detector files
            excluded = rule.exclude_path_regexes if rule else ()
            allowed = [p for p in places if not any(rx.search(p.path) for rx in excluded)]
            if not allowed:
                continue
            out.append(_moved(f, allowed[0], allowed[1:]) if allowed[0] is not places[0] or len(allowed) > 1 else f)
        return out

    def _scan_whole(self, data: bytes, origin: Place, lfs_store: Path | None, before: Version | None = None) -> Scanned:
        if self.limits is None:
            return Scanned(self._raw_bytes(data, origin))
        if is_lfs_pointer(data):  # its oid is not a secret; the content it names may hold one
            return self._scan_lfs_object(lfs_oid(data), origin, lfs_store)
        fmt = sniff(data, origin.path)
        text = plain_text(data, fmt)
        changed = changed_spans(before.data, data) if text and before is not None else None
        result = Scanned(self._raw_bytes(data, origin, changed))
        layered: list[Finding] = []
        unsafe: list[Finding] = []
        for item in decode(origin.path, data, self.limits, models=self.model_scan, fmt=fmt, changed=changed, seen=self.seen):
            if isinstance(item, Unsafe):
                if item.severity != "low" or self.pickle_unknown:
                    unsafe.append(self._unsafe(item, origin))
                continue
            where = _join(origin.container, item.container)
            if isinstance(item, Skip):
                result.skipped.append(Skip(origin.path, item.reason, where))
            else:
                layered += self._findings(self._locate_layer(item), replace(origin, container=where))
        # The secrets decoded layers show are not reported again as raw bytes; those outside the
        # changed span were shown by the earlier version's layers (and matched there raw).
        shown = {(f.detector, f.secret) for f in layered}
        if changed is not None:
            shown |= before.shown
        result.findings = _outer_only(result.findings, layered, shown) + layered + unsafe
        if text:
            result.version = Version(data, frozenset(shown))
        return result

    def _locate_layer(self, layer: Layer) -> list[tuple[Candidate, Location]]:
        if layer.key is None:
            return locate_bytes(self.matcher, layer.data)
        located = self._located.get(layer.key)
        if located is None:
            if len(self._located) >= MAX_LOCATED:
                self._located.clear()
            located = self._located[layer.key] = locate_bytes(self.matcher, layer.data)
        return located

    def _unsafe_in(self, data: bytes, origin: Place) -> list[Finding]:
        """The unsafe-model findings of `data` alone (the head of a blob too large to decode)."""
        return [self._unsafe(item, origin) for item in decode(origin.path, data, self.limits, models=True)
                if isinstance(item, Unsafe) and (item.severity != "low" or self.pickle_unknown)]  # fmt: skip

    def _unsafe(self, item: Unsafe, origin: Place) -> Finding:
        at = replace(origin, container=_join(origin.container, item.name))
        return unsafe_finding(item.kind, item.severity, item.target, item.offset, at)

    def _scan_text_stream(self, head: bytes, read: Callable[[int], bytes], origin: Place) -> Scanned:
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

    def _scan_lfs_object(self, oid: str | None, origin: Place, lfs_store: Path | None) -> Scanned:
        if oid is None or lfs_store is None:
            return Scanned()
        path = lfs_store / oid[:2] / oid[2:4] / oid
        try:
            with open(path, "rb", buffering=0) as fh:
                return self.scan_stream(file_reader(fh), replace(origin, container=_join(origin.container, "lfs")))
        except FileNotFoundError:
            return Scanned()  # content not fetched (GIT_LFS_SKIP_SMUDGE): only the pointer exists
        except OSError as exc:
            return Scanned([], [Skip(origin.path, f"LFS object unreadable: {exc.strerror or exc}", origin.container)])

    def scan_bytes(self, data: bytes, origin: Place) -> Scanned:
        return self.scan_blob(bytes_reader(data), [origin])


class _TextStream:
    """One text stream (a blob, or a layer decoded as it streams, see decoders.stream): its raw
    bytes through the matcher chunk by chunk, and each chunk shown to the encoded-text decoder
    as a window. Its findings go to `result` (the blob's own) or `layered` (a decoded layer's)."""

    def __init__(self, scanner: Scanner, origin: Place, enc: int, result: Scanned, layered: list[Finding]) -> None:
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


def _outer_only(found: list[Finding], layered: list[Finding], shown: set[tuple[str, str]] | None = None) -> list[Finding]:
    """A secret found in a decoded layer is reported there (with its container), not again as
    the raw bytes of the notebook or archive that hold it, nor as the "generic" high-entropy
    base64/hex text it was encoded into. `shown`: (detector, secret) of every layer that counts
    (default: `layered`'s)."""
    if shown is None:
        shown = {(f.detector, f.secret) for f in layered}
    if not shown:
        return found
    secrets = _Secrets(secret.encode() for _, secret in shown)
    return [f for f in found if (f.detector, f.secret) not in shown
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


def _decoder_choice(path: str) -> str:
    """What of a path decides how its bytes are decoded: the extension (`.ipynb`, `.tar`,
    `.safetensors`, pickle suffixes) — compared lower-case, as `sniff` does."""
    name = path.rsplit("/", 1)[-1].lower()
    return name.rsplit(".", 1)[-1] if "." in name else ""


def _moved(f: Finding, place: Place, also: Sequence[Place]) -> Finding:
    container = f.container  # the layer inside the blob; the same at every place
    return replace(f, path=place.path, source=place.source, commit=place.commit, author=place.author,
                   date=place.date, fingerprint=fingerprint(f.detector, f.secret_sha256, place.path, container),
                   also_at=tuple(_label(p) for p in also))  # fmt: skip


def _label(place: Place) -> str:
    return f"{place.path}@{place.commit}" if place.commit else place.path


def _merge_places(findings: list[Finding]) -> list[Finding]:
    """One finding per secret and layer when several decoder choices found it."""
    best: dict[tuple, Finding] = {}
    for f in findings:
        key = (f.detector, f.secret_sha256, f.container, f.line, f.column)
        old = best.get(key)
        if old is None:
            best[key] = f
        else:
            extra = [_label(f.place()), *f.also_at]
            best[key] = replace(old, also_at=tuple(dict.fromkeys((*old.also_at, *extra))))
    return list(best.values())


_CODE_DIGEST: str | None = None


def _code_digest() -> str:
    """A digest of the code that turns bytes into findings (decoders, matcher, checks, this
    module): a development install changes without a version bump."""
    global _CODE_DIGEST
    if _CODE_DIGEST is None:
        here = Path(__file__).parent
        h = hashlib.sha256()
        for path in sorted([*here.glob("decoders/*.py"), *here.glob("decoders/*.toml"), here / "matcher.py",
                            here / "checks.py", here / "locate.py", here / "findings.py", here / "scan.py",
                            here / "detectors.py"]):  # fmt: skip
            try:
                h.update(path.read_bytes())
            except OSError:
                pass
        _CODE_DIGEST = h.hexdigest()[:16]
    return _CODE_DIGEST
