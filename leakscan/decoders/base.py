"""Shared records of the decoders stage: limits, layers, the per-blob budget, handler items."""

from __future__ import annotations

import time
from dataclasses import dataclass

from ..kept import Kept


@dataclass(frozen=True)
class Limits:
    max_decoded_bytes: int = 256 << 20  # total decompressed/decoded bytes per top-level blob
    max_depth: int = 5  # nesting (archive in archive in …)
    max_members: int = 10_000  # per archive (and notebook cells, pickle/GGUF entries)
    max_ratio: float = 200.0  # compression ratio per member before it's a bomb
    max_seconds: float = 30.0  # wall time per top-level blob
    max_encoded_depth: int = 3  # base64-in-base64 … layers


@dataclass(frozen=True)
class Layer:
    """Decoded bytes to scan as text, and where they sit inside the blob."""

    container: str  # 'project.zip!project/.env', 'cell 3 output 1', 'base64@120', …
    data: bytes
    kind: str  # 'zip-member' | 'tar-member' | 'gzip' | 'notebook-cell' | 'pickle-strings' | …
    #: the same for the same bytes wherever met (an archive member `Seen` keeps, and what it
    #: decodes to): what the bytes match can be kept too
    key: tuple | None = None


class LimitReached(Exception):
    """A per-blob limit (bytes, time) ran out: decoding of the whole blob stops."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.where: str | None = None  # container chain, filled in by the innermost decoder
        self.member: str | None = None  # local name of the member being decoded, if a handler knows it


@dataclass(frozen=True, slots=True)
class Child:
    """A handler's product, named relative to the container being decoded."""

    name: str  # local name: 'project/.env', 'cell 3', 'base64@120'; '' = the container itself
    data: bytes
    kind: str
    counted: bool = False  # bytes already charged to the budget while decompressing
    encoded: bool = False  # an encoded-text layer (counts toward max_encoded_depth, not max_depth)
    seen: tuple | None = None  # its key in `Seen` (compressed bytes' digest, name, level), if kept
    remembered: tuple | None = None  # what `Seen` holds for that key; then `data` is not decompressed


@dataclass(frozen=True, slots=True)
class Unsafe:
    """Something a model file runs when it is loaded: a pickle import or call, a Keras layer."""

    kind: str  # 'unsafe-pickle' | 'unsafe-model'
    severity: str  # 'critical' (dangerous) | 'low' (not on the allowlist)
    target: str  # 'os.system', "Lambda layer 'lambda_1' with marshalled code"
    offset: int | None = None  # of the opcode in the pickle stream
    name: str | None = None  # local member name (None: the container itself); decode() yields the chain


@dataclass(frozen=True, slots=True)
class Problem:
    """Something a handler could not decode; becomes a Skip."""

    reason: str
    name: str | None = None  # local name of the member concerned; None = the container itself


def human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:g} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1024
    return str(n)  # pragma: no cover


class Seen:
    """What archive members decoded to, by the digest of their compressed bytes, so that the same
    member in another archive (the next version of a test fixture zip, a vendored copy) is not
    decompressed and searched again. Kept per process for a whole pass, within MAX_BYTES."""

    MAX_BYTES = 64 << 20
    MAX_ONE = 4 << 20

    def __init__(self) -> None:
        self._kept: Kept[tuple, tuple] = Kept(self.MAX_BYTES)

    def get(self, key: tuple) -> tuple | None:
        return self._kept.get(key)

    def put(self, key: tuple, items: tuple, size: int) -> None:
        if size <= self.MAX_ONE:
            self._kept.put(key, items, size)


class Context:
    """The budget of one top-level blob: bytes left and a deadline; `models`: also report what
    model files run when loaded (Unsafe items); `seen`: members decoded before, if kept."""

    __slots__ = ("limits", "left", "deadline", "models", "seen", "level")

    def __init__(self, limits: Limits, models: bool = False, seen: Seen | None = None) -> None:
        self.limits = limits
        self.models = models
        self.seen = seen
        self.level = (0, 0)  # (depth, encoded depth) of the layer a handler was just given
        self.left = limits.max_decoded_bytes
        self.deadline = time.monotonic() + limits.max_seconds

    def spend(self, n: int) -> None:
        self.left -= n
        if self.left < 0:
            raise LimitReached(f"decoded-size limit ({human(self.limits.max_decoded_bytes)}) reached")

    def tick(self) -> None:
        if time.monotonic() > self.deadline:
            raise LimitReached(f"time limit ({self.limits.max_seconds:g} s) reached")


_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F)}


def clean_name(raw: bytes | str) -> str:
    """A member name as printable text: invalid UTF-8 and control characters backslash-escaped."""
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogateescape")
    return raw.decode("utf-8", "backslashreplace").translate(_CONTROL)


_TEXTISH = bytes(range(0x20, 0x7F)) + b"\t\n\r\f\x1b" + bytes(range(0x80, 0x100))


def looks_text(data: bytes, max_bad: float = 0.05) -> bool:
    """Mostly printable UTF-8 (at most `max_bad` of the bytes control characters)."""
    if not data:
        return False
    bad = len(data.translate(None, _TEXTISH))
    if bad > len(data) * max_bad:
        return False
    if data.isascii():
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        # a sample cut mid-character is still text
        return exc.start >= len(data) - 3 and exc.reason == "unexpected end of data"
    return True
