"""GGUF (llama.cpp) model files: metadata string values and string arrays as `key = value`."""

from __future__ import annotations

import struct
from collections.abc import Iterator

from .base import Child, Context, Problem

MAX_STRING = 1 << 20
MAX_ARRAY_DEPTH = 3
_FIXED = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
STRING, ARRAY = 8, 9


class Malformed(Exception):
    pass


class _Reader:
    __slots__ = ("data", "pos", "wide")

    def __init__(self, data: bytes, wide: bool) -> None:
        self.data, self.pos, self.wide = data, 0, wide

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise Malformed(f"truncated at offset {self.pos} (wanted {n} bytes)")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u32(self) -> int:
        return struct.unpack("<I", self.take(4))[0]

    def count(self) -> int:  # v1 used 32-bit lengths and counts, v2+ 64-bit
        return struct.unpack("<Q", self.take(8))[0] if self.wide else self.u32()

    def string(self) -> bytes:
        return self.take(self.count())


def _text(raw: bytes) -> str:
    return raw[:MAX_STRING].decode("utf-8", "backslashreplace")


def gguf_metadata(data: bytes, name: str, ctx: Context) -> Iterator[Child | Problem]:
    limit = ctx.limits.max_members
    lines: list[str] = []
    problem = None
    try:
        r = _Reader(data, True)
        if r.take(4) != b"GGUF":
            raise Malformed("bad magic")
        version = r.u32()
        if version not in (1, 2, 3):
            raise Malformed(f"unknown version {version}")
        r.wide = version >= 2
        r.count()  # tensor count
        kv_count = r.count()
        if kv_count > limit:
            problem = f"member limit ({limit}) exceeded: {kv_count} metadata entries"
        for _ in range(min(kv_count, limit)):
            ctx.tick()
            key = _text(r.string())
            vtype = r.u32()
            _value(r, vtype, key, lines, ctx, limit, 0)
    except Malformed as exc:
        problem = f"malformed GGUF: {exc}"
    except struct.error as exc:
        problem = f"malformed GGUF: {exc}"
    if lines:
        yield Child("metadata", "\n".join(lines).encode("utf-8", "backslashreplace") + b"\n", "gguf-metadata")
    if problem:
        yield Problem(problem)
    return True


def _value(r: _Reader, vtype: int, key: str, lines: list[str], ctx: Context, limit: int, depth: int) -> None:
    if vtype == STRING:
        lines.append(f"{key} = {_text(r.string())}")
    elif vtype in _FIXED:
        r.take(_FIXED[vtype])
    elif vtype == ARRAY:
        if depth >= MAX_ARRAY_DEPTH:
            raise Malformed("arrays nested too deeply")
        itype = r.u32()
        n = r.count()
        if itype in _FIXED:
            r.take(n * _FIXED[itype])  # numbers: skipped without looking
            return
        if itype not in (STRING, ARRAY):
            raise Malformed(f"unknown array item type {itype}")
        for i in range(n):
            if not i & 0xFFF:
                ctx.tick()
            if i < limit:
                _value(r, itype, f"{key}[{i}]", lines, ctx, limit, depth + 1)
            elif itype == STRING:
                r.take(r.count())  # beyond the limit: skip, bounded by the data
            else:
                _value(r, itype, key, [], ctx, limit, depth + 1)
    else:
        raise Malformed(f"unknown value type {vtype} for key {key!r}")
