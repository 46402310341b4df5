"""Pickles (plain, torch `data.pkl`, legacy torch files): string constants, never unpickled.

The opcode stream is walked with `pickletools.genops`, which only parses; nothing is imported,
constructed or called. A string followed directly by another string (a dict key and its value,
as in a pickled TrainingArguments) is written as `key = value`, other strings one per line.
"""

from __future__ import annotations

import io
import pickletools
from collections.abc import Iterator

from .base import Child, Context, Problem, looks_text

STRING_OPS = frozenset({"STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE",
                        "SHORT_BINUNICODE", "BINUNICODE8"})  # fmt: skip
BYTES_OPS = frozenset({"BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "BYTEARRAY8"})
PUT_OPS = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})
GET_OPS = frozenset({"GET", "BINGET", "LONG_BINGET"})
NEUTRAL_OPS = frozenset({"FRAME", "PROTO"})  # do not separate a key from its value
MAX_STRING = 1 << 20  # longer constants are left to the raw scan
MAX_PICKLES = 16  # consecutive pickles in one file (legacy torch files hold several)
MAX_MEMO = 1 << 20


def sniff_pickle(data: bytes, name: str) -> bool:
    if len(data) >= 4 and data[0] == 0x80 and 2 <= data[1] <= 5:
        return True
    return name.lower().endswith((".pkl", ".pickle")) and len(data) > 0


def _as_text(op: str, arg) -> str | None:
    if op in STRING_OPS:
        if isinstance(arg, bytes):  # protocol 0-2 byte strings
            return arg.decode("utf-8", "backslashreplace") if looks_text(arg) else None
        return arg if isinstance(arg, str) and len(arg) <= MAX_STRING else None
    if op in BYTES_OPS and isinstance(arg, bytes) and 8 <= len(arg) <= MAX_STRING and looks_text(arg):
        return arg.decode("utf-8", "backslashreplace")
    return None


def pickle_strings(data: bytes, name: str, ctx: Context) -> Iterator[Child | Problem]:
    lines: list[str] = []
    problem = None
    f = io.BytesIO(data)
    memo: dict[int, str | None] = {}
    ops = 0
    limit = ctx.limits.max_members * 100  # string constants per file
    for _ in range(MAX_PICKLES):
        start = f.tell()
        if start >= len(data) or (start and data[start] != 0x80):
            break
        key: str | None = None
        last: str | None = None
        try:
            for opcode, arg, _pos in pickletools.genops(f):
                ops += 1
                if not ops & 0xFFF:
                    ctx.tick()
                op = opcode.name
                if op in NEUTRAL_OPS:
                    continue
                if op in PUT_OPS or op == "MEMOIZE":
                    if len(memo) < MAX_MEMO:
                        memo[len(memo) if op == "MEMOIZE" else arg] = last
                    continue
                value = memo.get(arg) if op in GET_OPS else _as_text(op, arg)
                last = value
                if value is None:
                    if key is not None:
                        lines.append(key)
                        key = None
                elif key is None:
                    key = value
                else:
                    lines.append(f"{key} = {value}")
                    key = None
                if len(lines) >= limit:
                    problem = f"string limit ({limit}) reached"
                    break
        except Exception as exc:  # pickletools raises ValueError & co. on malformed input
            problem = f"malformed pickle: {exc}"
        if key is not None:
            lines.append(key)
        if problem:
            break
    if lines:
        yield Child("", "\n".join(lines).encode("utf-8", "backslashreplace") + b"\n", "pickle-strings")
    if problem and (lines or name.lower().endswith((".pkl", ".pickle", ".pt", ".pth", ".bin"))):
        yield Problem(problem)
    return bool(lines) or problem is None
