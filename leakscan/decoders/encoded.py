"""Encoded text inside a text layer: base64/base64url, hex, percent-encoding, \\uXXXX escapes, UTF-16.

This runs on every text blob, so it is built to be cheap: one C-level regex pass per encoding
(percent and \\u passes only when a `%` or `\\u` is present at all), cheap shape tests on each run,
and a decode of a short prefix before a run is decoded whole. Only decodings that come out as
mostly printable UTF-8 (or as a gzip stream) become layers, named `<kind>@<offset>`.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Iterable, Iterator, Sequence
from urllib.parse import unquote_to_bytes

from ..lazyre import lazy
from .base import Child, Context, Problem, looks_text

MIN_B64 = 24
MIN_HEX = 32
MAX_RUN = 64 << 20  # longer runs are not decoded
MAX_LAYERS = 1000  # encoded layers per kind per parent layer
MAX_CANDIDATES = 100_000  # runs/spans examined per kind per parent layer (bounds adversarial input)
SAMPLE = 64  # characters decoded before deciding to decode a whole run
EDGE = 256  # how far a percent/\u span is extended to the left over word characters

_B64_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/_-"
_STD_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_B64_MASK = bytes(0x41 if i in _STD_CHARS else 0x2E for i in range(256))  # alphabet → 'A', rest → '.'
_ALPHABET_MASK = bytes(0x41 if i in _B64_CHARS else 0x2E for i in range(256))
_B64_NEEDLE = b"A" * MIN_B64
_B64_REST = lazy(rb"[A-Za-z0-9+/_-]*")
WINDOW = 16 << 20  # the mask is built a window at a time
_HEX_ONLY = lazy(rb"[0-9A-Fa-f]+")
_HEX_PREFIX = lazy(rb"[0-9A-Fa-f]*")
# literal-first patterns: `re` then skips ahead with a fast search for the literal
_PCT_RUN = lazy(rb"%[0-9A-Fa-f]{2}(?:[^\s\"'<>%`]{0,64}%[0-9A-Fa-f]{2})*[^\s\"'<>%`]{0,64}")
_PCT_LEFT = lazy(rb"[^\s\"'<>%`]*")
# Only escapes of ASCII characters can hide (part of) a token: secrets are ASCII, and text whose
# escapes are all é, ü or emoji reveals nothing new when decoded. This skips most source code.
_UESC_RUN = lazy(rb"\\u00[0-7][0-9A-Fa-f](?:[^\s\"'\\]{0,64}\\u[0-9A-Fa-f]{4})*[^\s\"'\\]{0,64}")
_UESC_LEFT = lazy(rb"[^\s\"'\\]*")
_UESC = lazy(rb"\\u([0-9A-Fa-f]{4})")
_GZIP = b"\x1f\x8b\x08"
_URL_TO_STD = bytes.maketrans(b"-_", b"+/")


def _b64decode(run: bytes, url: bool) -> bytes | None:
    if len(run) % 4 == 1:  # one dangling character encodes nothing
        run = run[:-1]
    if url:
        run = run.translate(_URL_TO_STD)
    pad = -len(run) % 4
    try:
        return binascii.a2b_base64(run + b"=" * pad, strict_mode=False)
    except binascii.Error:
        return None


def decoded_ok(data: bytes | None) -> bool:
    return bool(data) and (data.startswith(_GZIP) or looks_text(data))


def run_end(data: bytes, pos: int) -> int:
    """Where the run of base64/hex characters going on at data[pos] ends."""
    return _B64_REST.match(data, pos).end()


def alphabet_runs(data: bytes) -> Iterator[tuple[int, int]]:
    """(start, end) of every run of base64/base64url/hex characters that holds at least MIN_B64
    characters of the standard alphabet in a row.

    `bytes.translate` maps the standard alphabet to 'A' and everything else to '.', then
    `bytes.find` looks for MIN_B64 'A's: both run at memory speed, unlike a regex with a leading
    class. `_` and `-` are left out of the mask so that snake_case and kebab-case identifiers,
    the bulk of long runs in source code, never become candidates; a run found is then extended
    over them, which recovers base64url. (A base64url run with no 24 characters free of `_` and
    `-` in a row is missed: base64url is rarely used to encode text.)"""
    a = 0
    n = len(data)
    while a < n:
        mask = data[a : a + WINDOW].translate(_B64_MASK)
        pos = mask.find(_B64_NEEDLE)
        nxt = a + len(mask)
        while pos != -1:
            start = _run_start(data, a + pos)
            end = _B64_REST.match(data, a + pos + MIN_B64).end()
            yield start, end
            if end >= a + len(mask):  # the run reaches past this window
                nxt = end
                break
            pos = mask.find(_B64_NEEDLE, end - a)
        a = nxt


def _run_start(data: bytes, pos: int) -> int:
    """Where the run of the whole alphabet (`_` and `-` included) holding data[pos] starts. Looks
    back in doubling steps at C speed (a byte-wise walk took seconds over megabytes of `a_b_c_…`):
    at most twice the bytes of this run's own prefix, which no other run shares."""
    if pos == 0 or data[pos - 1] not in _B64_CHARS:
        return pos
    step, hi = 64, pos
    while hi > 0:
        lo = max(0, hi - step)
        i = data[lo:hi].translate(_ALPHABET_MASK).rfind(b".")
        if i >= 0:
            return lo + i + 1
        hi, step = lo, step * 2
    return 0


def _base64_and_hex(data: bytes, base: int = 0, runs: Iterable[tuple[int, int]] | None = None) -> Iterator[Child | Problem]:
    """Layers of the base64/hex `runs` of `data` (default: all), named by offset + `base`."""
    b64 = hexes = tried = 0
    for start, end in alphabet_runs(data) if runs is None else runs:
        n = end - start
        if n > MAX_RUN:
            continue
        run = data[start:end]
        # cheap rejections first: identifiers, paths and words are all one case; base64 is not
        hexrun = _HEX_ONLY.fullmatch(run) is not None
        if not hexrun and (run.islower() or run.isupper()):
            continue
        if hexrun and n < MIN_HEX:
            continue
        tried += 1
        if tried > MAX_CANDIDATES:
            yield _too_many("base64/hex")
            return
        if hexrun:
            if hexes >= MAX_LAYERS:
                continue
            run = run[: n & ~1]
            if not looks_text(bytes.fromhex(run[:SAMPLE].decode())):
                continue
            out = bytes.fromhex(run.decode())
            if looks_text(out):
                hexes += 1
                yield Child(f"hex@{base + start}", out, "hex", encoded=True)
            continue
        if b64 >= MAX_LAYERS:
            continue
        run = run.rstrip(b"=")
        url = b"-" in run or b"_" in run
        if url and (b"+" in run or b"/" in run):
            continue  # both alphabets: a path or an identifier, not base64
        if n > SAMPLE and not decoded_ok(_b64decode(run[:SAMPLE], url)):
            continue
        out = _b64decode(run, url)
        if out and len(out) >= 16 and decoded_ok(out):
            b64 += 1
            yield Child(f"base64@{base + start}", out, "base64", encoded=True)


def _too_many(kind: str) -> Problem:
    return Problem(f"encoded-text candidate limit ({MAX_CANDIDATES} {kind} runs) reached; the rest of the layer was not searched for {kind}")


def _spans(data: bytes, run_re: re.Pattern[bytes], left_re: re.Pattern[bytes]) -> Iterator[tuple[int, bytes]]:
    for seen, m in enumerate(run_re.finditer(data)):
        if seen >= MAX_CANDIDATES:
            yield -1, b""
            return
        start = m.start()
        start -= left_re.match(data[max(0, start - EDGE) : start][::-1]).end()  # back over the word
        yield start, data[start : m.end()]


def _escaped_layers(data: bytes, run_re, left_re, decode, kind: str, label: str, base: int = 0,
                    own: tuple[int, int] | None = None, done: dict[str, int] | None = None) -> Iterator[Child | Problem]:  # fmt: skip
    """Spans of an escaping scheme (percent, \\u) decoded; each that reads as text is a layer.
    With `own`, only the spans that start in data[own[0]:own[1]] and not before where the last
    span decoded ended (`done[kind]`, absolute, kept up to date): a span decoded by one window
    is found again in the next, from a later escape in it, when it reaches past their overlap."""
    count = 0
    for start, span in _spans(data, run_re, left_re):
        if start < 0:
            yield _too_many(label)
            return
        if own is not None:
            if not own[0] <= start < own[1] or base + start < done.get(kind, 0):
                continue
            done[kind] = base + start + len(span)
        out = decode(span)
        if len(out) >= 8 and out != span and looks_text(out):
            yield Child(f"{kind}@{base + start}", out, kind, encoded=True)
            count += 1
            if count >= MAX_LAYERS:
                return


def _percent(data: bytes, base: int = 0, own: tuple[int, int] | None = None, done: dict[str, int] | None = None) -> Iterator[Child | Problem]:
    return _escaped_layers(data, _PCT_RUN, _PCT_LEFT, unquote_to_bytes, "percent", "percent-encoded", base, own, done)


def _unescape_u(span: bytes) -> bytes:
    parts: list[str] = []
    pos = 0
    for m in _UESC.finditer(span):
        parts.append(span[pos : m.start()].decode("latin-1"))
        parts.append(chr(int(m.group(1), 16)))
        pos = m.end()
    parts.append(span[pos:].decode("latin-1"))
    text = "".join(parts)
    try:  # JSON writes characters outside the BMP as surrogate pairs
        text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le")
    except UnicodeDecodeError:
        pass
    return text.encode("utf-8", "backslashreplace")


def _u_escapes(data: bytes, base: int = 0, own: tuple[int, int] | None = None, done: dict[str, int] | None = None) -> Iterator[Child | Problem]:
    return _escaped_layers(data, _UESC_RUN, _UESC_LEFT, _unescape_u, "unicode-escape", "\\u-escaped", base, own, done)


def window_encoded(data: bytes, base: int, own: tuple[int, int], final: bool, skip_until: int,
                   done: dict[str, int]) -> tuple[Iterator[Child | Problem], tuple[int, int] | None]:  # fmt: skip
    """`find_encoded` (but UTF-16) for one window of a stream too long to hold: the base64/hex
    runs that start in data[own[0]:own[1]] at or after `skip_until` and end inside the window,
    and the percent/\\u spans that start there (`done`: see `_escaped_layers`), named by offset
    + `base`. Also the run that starts there but reaches the end of a window that is not the
    last, if any: at least OVERLAP - handover (16 KiB) long, it is for the caller to decode as a
    stream."""
    runs: list[tuple[int, int]] = []
    long_run = None
    for start, end in alphabet_runs(data):
        if start < max(own[0], skip_until):
            continue
        if start >= own[1]:
            break
        if end >= len(data) and not final:
            long_run = (start, end)
            break
        runs.append((start, end))

    def items() -> Iterator[Child | Problem]:
        yield from _base64_and_hex(data, base, runs)
        if b"%" in data:
            yield from _percent(data, base, own, done)
        if b"\\u00" in data:
            yield from _u_escapes(data, base, own, done)

    return items(), long_run


def long_run_kind(run: bytes) -> str | None:
    """What the first part of a run too long to hold encodes, told as `_base64_and_hex` tells a
    whole run: 'hex', 'base64', 'base64url', or None (an identifier, a path, not text)."""
    if _HEX_ONLY.fullmatch(run):
        return "hex" if looks_text(bytes.fromhex(run[:SAMPLE].decode())) else None
    if run.islower() or run.isupper():
        return None
    url = b"-" in run or b"_" in run
    if url and (b"+" in run or b"/" in run):
        return None
    if not decoded_ok(_b64decode(run[:SAMPLE], url)):
        return None
    return "base64url" if url else "base64"


class RunDecoder:
    """Decodes a base64/hex run piece by piece, in steps aligned to the encoding (4 characters
    of base64, 2 of hex): the pieces decode to exactly what the whole run would."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.unit = 2 if kind == "hex" else 4
        self.carry = b""
        self.ended = False  # a hex run met a character that is not hex: it ends there

    def feed(self, chars: bytes) -> bytes:
        if self.kind == "hex":
            valid = _HEX_PREFIX.match(chars).end()
            if valid < len(chars):
                chars = chars[:valid]
                self.ended = True
        buf = self.carry + chars
        cut = len(buf) - len(buf) % self.unit
        self.carry = buf[cut:]
        if self.kind == "hex":
            return bytes.fromhex(buf[:cut].decode())
        return _b64decode(buf[:cut], self.kind == "base64url") or b""

    def close(self) -> bytes:
        """The last, unaligned characters (a dangling hex digit is dropped, as for a whole run)."""
        carry, self.carry = self.carry, b""
        if self.kind == "hex" or not carry:
            return b""
        return _b64decode(carry, self.kind == "base64url") or b""


def utf16_encoding(data: bytes) -> str | None:
    """'utf-16-le' / 'utf-16-be' for UTF-16 text (a BOM, or ASCII interleaved with NULs)."""
    if data[:2] == b"\xff\xfe" and data[2:4] != b"\0\0":
        return "utf-16-le"
    if data[:2] == b"\xfe\xff":
        return "utf-16-be"
    sample = data[:4096]
    half = len(sample) // 2
    if half < 8 or sample.count(0) < half * 0.8:
        return None
    even, odd = sample[0::2], sample[1::2]
    if odd.count(0) >= half * 0.9 and even.count(0) <= half * 0.1 and looks_text(even):
        return "utf-16-le"
    if even.count(0) >= half * 0.9 and odd.count(0) <= half * 0.1 and looks_text(odd):
        return "utf-16-be"
    return None


def find_encoded(data: bytes, name: str, ctx: Context, changed: Sequence[tuple[int, int]] | None = None) -> Iterator[Child | Problem]:
    """Encoded-text layers of one text layer; with `changed` (spans cut at whitespace or quotes,
    which no run crosses), only those that lie there, named as in the whole layer."""
    enc = utf16_encoding(data)
    if enc:
        body = data[2:] if data[:2] in (b"\xff\xfe", b"\xfe\xff") else data
        text = body[: len(body) & ~1].decode(enc, "replace")
        yield Child("utf16", text.encode("utf-8", "backslashreplace"), "utf16", encoded=True)
        return
    for base, end in changed if changed is not None else [(0, len(data))]:
        part = data if base == 0 and end == len(data) else data[base:end]
        yield from _base64_and_hex(part, base)
        ctx.tick()
        if b"%" in part:
            yield from _percent(part, base)
            ctx.tick()
        if b"\\u00" in part:
            yield from _u_escapes(part, base)
