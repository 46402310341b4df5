"""Pickles (plain, torch `data.pkl`, legacy torch files, joblib, numpy object arrays): their
string constants, and what they import and call. Never unpickled.

The opcode stream is walked with `pickletools.genops`, which only parses; nothing is imported,
constructed or called. A string followed directly by another string (a dict key and its value,
as in a pickled TrainingArguments) is written as `key = value`, other strings one per line.

Beside the strings, the walk keeps a symbolic stack and memo — values are constants, imports
(`GLOBAL`, `STACK_GLOBAL`, `INST`) and calls (`REDUCE`, `NEWOBJ`, `OBJ`, `INST`) of them — so
that an import whose module and name come through the memo is still named, and a call of
`getattr(__import__("os"), "system")` is named `os.system`. Each import is classified
(unsafe.py): dangerous ones are reported, unknown ones at low severity. A stream that breaks is
judged on what came before the break, and the break is reported: a broken stream is never clean.
"""

from __future__ import annotations

import io
import pickletools
from collections.abc import Iterator
from dataclasses import dataclass, field

from ..lazyre import lazy
from .base import Child, Context, Problem, Unsafe, looks_text
from .unsafe import DANGEROUS, SAFE, SEVERITY, classify, qualified

STRING_OPS = frozenset({"STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE",
                        "SHORT_BINUNICODE", "BINUNICODE8"})  # fmt: skip
BYTES_OPS = frozenset({"BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "BYTEARRAY8"})
PUT_OPS = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})
GET_OPS = frozenset({"GET", "BINGET", "LONG_BINGET"})
INT_OPS = frozenset({"INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4"})
NEUTRAL_OPS = frozenset({"FRAME", "PROTO"})  # do not separate a key from its value
MAX_STRING = 1 << 20  # longer constants are left to the raw scan
MAX_PICKLES = 16  # consecutive pickles in one file (legacy torch files hold several)
MAX_MEMO = 1 << 20
MAX_STACK = 1 << 20  # symbolic values on the stack
MAX_ITEMS = 64  # items of a tuple or dict kept for resolving calls
MAX_IMPORTS = 1000  # distinct reported imports per file
MAX_ARRAY = 1 << 40  # a joblib inline array's size past which the stream is not followed
_PICKLE_NAMES = (".pkl", ".pickle", ".pt", ".pth", ".bin", ".joblib", ".ckpt", ".npy", ".sav", ".dat")


def sniff_pickle(data: bytes, name: str) -> bool:
    if len(data) >= 4 and data[0] == 0x80 and 2 <= data[1] <= 5:
        return True
    if name.lower().endswith((".pkl", ".pickle")) and len(data) > 0:
        return True
    return _headerless(data)


# every opcode but PROTO may begin a pickle: the unpickler needs no header
_OPENERS = frozenset(op.code.encode("latin-1") for op in pickletools.opcodes if op.name != "PROTO")


def _headerless(data: bytes) -> bool:
    """A pickle without a PROTO header (protocol 0/1 always, any protocol if it wants to) under
    any name: it ends with STOP, parses whole, and imports something. A misleading extension must
    not hide it (torch.load unpickles a non-zip file whatever its name)."""
    if data[:1] not in _OPENERS or data.rstrip(b"\r\n")[-1:] != b"." or len(data) > MAX_STRING:
        return False
    imports = False
    try:
        # the whole stream must parse up to its STOP: prose that starts with an opcode letter
        # ("copyright …", a commit message) parses as a GLOBAL, then fails further on
        for op, arg, _pos in pickletools.genops(io.BytesIO(data)):
            if op.name in ("GLOBAL", "INST"):
                if not _IMPORT_ARG.fullmatch(arg or ""):
                    return False
                imports = True
            elif op.name == "STACK_GLOBAL":
                imports = True
    except Exception:
        return False
    return imports


# what GLOBAL/INST name, as genops gives it: "module name", both dotted identifiers
_IMPORT_ARG = lazy(r"[A-Za-z_][\w.]*\x20[A-Za-z_][\w.]*")


def _as_text(op: str, arg) -> str | None:
    if op in STRING_OPS:
        if isinstance(arg, bytes):  # protocol 0-2 byte strings
            return arg.decode("utf-8", "backslashreplace") if looks_text(arg) else None
        return arg if isinstance(arg, str) and len(arg) <= MAX_STRING else None
    if op in BYTES_OPS and isinstance(arg, bytes) and 8 <= len(arg) <= MAX_STRING and looks_text(arg):
        return arg.decode("utf-8", "backslashreplace")
    return None


# --- the symbolic values -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Global:
    module: str
    name: str
    offset: int

    @property
    def path(self) -> str:
        return qualified(self.module, self.name)


@dataclass(frozen=True, slots=True)
class Call:
    func: object
    args: object
    offset: int


@dataclass(slots=True)
class Obj:
    """A dict or list, its first string-keyed items kept (a joblib array wrapper's state)."""

    items: dict = field(default_factory=dict)


OPAQUE = object()  # a value nothing is known of: a float, a storage, a buffer
_IMPORTERS = frozenset({"builtins.__import__", "importlib.import_module", "importlib.__import__"})
_NAMED_IMPORTERS = frozenset({"numpy.core._ufunc_reconstruct", "numpy._core._ufunc_reconstruct"})  # (module, name)
MAX_CHAIN = 32  # getattr(getattr(…)) levels resolved


class Broken(Exception):
    """The stream would make the unpickler fail here."""


def resolve(value) -> str | None:
    """The dotted path a value stands for: an import, `__import__("os")`, `getattr(x, "name")`
    (chains of them, to MAX_CHAIN levels)."""
    names: list[str] = []
    for _ in range(MAX_CHAIN):
        if isinstance(value, Global):
            return ".".join([value.path, *reversed(names)])
        if not (isinstance(value, Call) and isinstance(value.func, Global) and isinstance(value.args, tuple)
                and value.args):  # fmt: skip
            return None
        fn, first = value.func.path, value.args[0]
        if fn in _IMPORTERS and isinstance(first, str):
            return ".".join([first, *reversed(names)])
        if fn in _NAMED_IMPORTERS and len(value.args) >= 2 and isinstance(first, str) and isinstance(value.args[1], str):
            return ".".join([first, value.args[1], *reversed(names)])
        if fn != "builtins.getattr" or len(value.args) < 2 or not isinstance(value.args[1], str):
            return None
        names.append(value.args[1])
        value = first
    return None


@dataclass
class Walk:
    """What one pickle file holds: its strings, and the imports and calls it would make."""

    lines: list[str] = field(default_factory=list)
    found: dict[str, Unsafe] = field(default_factory=dict)  # target → first place
    problem: str | None = None
    ops: int = 0

    def report(self, verdict: str, target: str, offset: int) -> None:
        if verdict != SAFE and target not in self.found and len(self.found) < MAX_IMPORTS:
            self.found[target] = Unsafe("unsafe-pickle", SEVERITY[verdict], target, offset)


class _Machine:
    """The unpickler's stack, memo and marks, over symbolic values."""

    def __init__(self, data: bytes, walk: Walk, base: int) -> None:
        self.data, self.walk, self.base = data, walk, base
        self.stack: list = []
        self.marks: list[int] = []
        self.memo: dict[int, object] = {}

    def pop(self):
        if not self.stack or (self.marks and len(self.stack) <= self.marks[-1]):
            raise Broken("stack underflow")
        return self.stack.pop()

    def pop_mark(self) -> list:
        if not self.marks:
            raise Broken("no MARK")
        at = self.marks.pop()
        items = self.stack[at:]
        del self.stack[at:]
        return items

    def push(self, value) -> None:
        if len(self.stack) >= MAX_STACK:
            raise Broken(f"stack limit ({MAX_STACK}) reached")
        self.stack.append(value)

    def top(self):
        if not self.stack or (self.marks and len(self.stack) <= self.marks[-1]):
            raise Broken("stack underflow")
        return self.stack[-1]

    def imported(self, module, name, pos: int) -> Global | object:
        off = self.base + pos
        if not isinstance(module, str) or not isinstance(name, str):
            # the module or name is computed at load time (a call's result): nothing benign does that
            self.walk.report(DANGEROUS, f"import of a computed name ({_show(module)}.{_show(name)})", off)
            return OPAQUE
        self.walk.report(classify(module, name), qualified(module, name), off)
        return Global(module, name, off)

    def call(self, func, args, pos: int) -> Call:
        value = Call(func, args, self.base + pos)
        # what getattr/__import__ reach at load time is judged like an import of it
        for reached in dict.fromkeys((resolve(func), resolve(value))):
            if reached and not (isinstance(func, Global) and reached == func.path):
                module, _, name = reached.rpartition(".")
                if (classify(module, name) if module else classify(reached, "")) == DANGEROUS:
                    self.walk.report(DANGEROUS, f"{reached} (reached by a call at load time)", self.base + pos)
        return value

    def line_pair(self, pos: int) -> tuple[str, str]:
        """GLOBAL/INST's two newline-terminated operands, read from the bytes themselves
        (pickletools joins them with a space, which a name may hold)."""
        end1 = self.data.index(b"\n", pos + 1)
        end2 = self.data.index(b"\n", end1 + 1)
        return (self.data[pos + 1 : end1].decode("utf-8", "backslashreplace"),
                self.data[end1 + 1 : end2].decode("utf-8", "backslashreplace"))  # fmt: skip

    def step(self, op: str, arg, pos: int) -> int | None:
        """One opcode's effect; returns a position to resume the walk at (past raw array bytes
        joblib writes inside its stream), or None."""
        # the most frequent opcodes of real checkpoints first
        if op in PUT_OPS:
            if not self.stack or (self.marks and len(self.stack) <= self.marks[-1]):
                raise Broken("stack underflow")
            if len(self.memo) < MAX_MEMO or arg in self.memo:
                self.memo[arg] = self.stack[-1]
        elif op in STRING_OPS:
            if len(self.stack) >= MAX_STACK:
                raise Broken(f"stack limit ({MAX_STACK}) reached")
            self.stack.append(arg.decode("latin-1") if isinstance(arg, bytes) else arg)
        elif op in GET_OPS:
            if arg not in self.memo:
                raise Broken(f"memo key {arg} missing")
            self.push(self.memo[arg])
        elif op == "MARK":
            self.marks.append(len(self.stack))
        elif op in ("GLOBAL", "INST"):
            module, name = self.line_pair(pos)
            g = self.imported(module, name, pos)
            if op == "INST":
                self.push(self.call(g, tuple(self.pop_mark()[:MAX_ITEMS]), pos))
            else:
                self.push(g)
        elif op == "STACK_GLOBAL":
            name = self.pop()
            self.push(self.imported(self.pop(), name, pos))
        elif op == "REDUCE":
            args = self.pop()
            self.push(self.call(self.pop(), args, pos))
        elif op == "NEWOBJ":
            args = self.pop()
            self.push(self.call(self.pop(), args, pos))
        elif op == "NEWOBJ_EX":
            self.pop()
            args = self.pop()
            self.push(self.call(self.pop(), args, pos))
        elif op == "OBJ":
            items = self.pop_mark()
            if not items:
                raise Broken("OBJ without a class")
            self.push(self.call(items[0], tuple(items[1:MAX_ITEMS]), pos))
        elif op == "BUILD":
            state = self.pop()
            return self._built(self.top(), state, pos)
        elif op == "MEMOIZE":
            if len(self.memo) < MAX_MEMO:
                self.memo[len(self.memo)] = self.top()
        elif op == "EMPTY_TUPLE":
            self.push(())
        elif op in ("TUPLE1", "TUPLE2", "TUPLE3"):
            n = int(op[-1])
            items = [self.pop() for _ in range(n)][::-1]
            self.push(tuple(items))
        elif op == "TUPLE":
            self.push(tuple(self.pop_mark()[:MAX_ITEMS]))
        elif op in ("EMPTY_DICT", "EMPTY_LIST", "EMPTY_SET"):
            self.push(Obj())
        elif op in ("DICT", "LIST", "FROZENSET"):
            items = self.pop_mark()
            self.push(_obj(items if op == "DICT" else []))
        elif op == "SETITEM":
            value, key = self.pop(), self.pop()
            _set(self.top(), [key, value])
        elif op == "SETITEMS":
            items = self.pop_mark()
            _set(self.top(), items)
        elif op in ("APPENDS", "ADDITEMS"):
            self.pop_mark()
            self.top()
        elif op == "APPEND":
            self.pop()
            self.top()
        elif op == "POP":
            if self.stack and not (self.marks and len(self.stack) <= self.marks[-1]):
                self.stack.pop()
            elif self.marks:  # POP of a mark: what the unpickler does too
                self.marks.pop()
            else:
                raise Broken("stack underflow")
        elif op == "POP_MARK":
            self.pop_mark()
        elif op == "DUP":
            self.push(self.top())
        elif op == "PERSID":
            self.push(OPAQUE)
        elif op == "BINPERSID":
            self.pop()
            self.push(OPAQUE)
        elif op in ("EXT1", "EXT2", "EXT4"):
            # copyreg's extension registry: empty unless the loading program filled it
            self.walk.report("unknown", f"copyreg extension code {arg}", self.base + pos)
            self.push(OPAQUE)
        elif op in ("STOP", "PROTO", "FRAME", "READONLY_BUFFER"):
            pass
        elif op in INT_OPS:  # kept: a joblib array's shape
            self.push(arg if isinstance(arg, int) and not isinstance(arg, bool) and abs(arg) < 1 << 62 else OPAQUE)
        else:  # floats, None, booleans, bytes, NEXT_BUFFER
            self.push(OPAQUE)
        return None

    def _built(self, obj, state, pos: int) -> int | None:
        if not (isinstance(obj, Call) and isinstance(obj.func, Global) and isinstance(state, Obj)):
            return None
        if obj.func.path != "joblib.numpy_pickle.NumpyArrayWrapper":
            return None
        return _joblib_array_end(self.data, pos + 1, state.items)


def _show(value) -> str:
    return repr(value)[:40] if isinstance(value, str) else "?"


def _obj(items: list) -> Obj:
    o = Obj()
    _set(o, items)
    return o


def _set(target, items: list) -> None:
    if isinstance(target, Obj):
        for key, value in zip(items[::2], items[1::2]):
            if isinstance(key, str) and len(target.items) < MAX_ITEMS:
                target.items[key] = value


# joblib (≥ 0.12) writes an array's raw bytes right after its wrapper's BUILD: a padding-length
# byte and that many 0xff bytes when it aligns arrays, then the data; object arrays are a
# protocol 2 pickle of their own there instead.
_DTYPE = lazy(r"^[<>|=]?([a-zA-Z])(\d*)$")
_NAMED = {"bool": 1, "int8": 1, "uint8": 1, "int16": 2, "uint16": 2, "float16": 2, "int32": 4, "uint32": 4,
          "float32": 4, "int64": 8, "uint64": 8, "float64": 8, "complex64": 8, "complex128": 16}  # fmt: skip
_CODE_SIZE = {"b": 1, "?": 1, "B": 1, "h": 2, "H": 2, "e": 2, "i": 4, "I": 4, "f": 4, "l": 8, "L": 8, "q": 8,
              "Q": 8, "d": 8, "g": 16, "F": 8, "D": 16}  # fmt: skip


def _itemsize(dtype) -> int | None:
    """A numpy dtype's item size from its pickled form: numpy.dtype(('f8', False, True)) with a
    state tuple whose sixth item is the size of flexible types."""
    if not (isinstance(dtype, Call) and isinstance(dtype.args, tuple) and dtype.args):
        return None
    code = dtype.args[0]
    if not isinstance(code, str):
        return None
    if code in _NAMED:
        return _NAMED[code]
    m = _DTYPE.match(code)
    if not m:
        return None
    kind, digits = m.groups()
    if digits:
        size = int(digits)
        return size * 4 if kind == "U" else size
    return _CODE_SIZE.get(kind)


def _joblib_array_end(data: bytes, at: int, state: dict) -> int | None:
    """Where the stream goes on after an array's bytes; `at` itself for an object array, whose
    own pickle starts there."""
    shape, dtype = state.get("shape"), state.get("dtype")
    if isinstance(dtype, Call) and isinstance(dtype.args, tuple) and dtype.args[:1] == ("O8",):
        return at
    size = _itemsize(dtype)
    if size is None or not isinstance(shape, tuple) or not all(isinstance(n, int) for n in shape):
        return None
    count = 1
    for n in shape:
        count *= n
    nbytes = count * size
    if nbytes > MAX_ARRAY:
        return None
    if "numpy_array_alignment_bytes" in state and at < len(data):
        at += 1 + data[at]
    return at + nbytes


def walk_pickle(data: bytes, ctx: Context, base: int = 0) -> Walk:
    """The strings and the imports/calls of a file of consecutive pickles."""
    walk = Walk()
    f = io.BytesIO(data)
    memo: dict[int, str | None] = {}
    for _ in range(MAX_PICKLES):
        start = f.tell()
        if start >= len(data) or (start and data[start] != 0x80):
            break
        _walk_one(f, _Machine(data, walk, base), memo, ctx, 0)
        if walk.problem:
            break
    return walk


def _walk_one(f: io.BytesIO, machine: _Machine, memo: dict[int, str | None], ctx: Context, depth: int) -> None:
    """One pickle, from f's position to its STOP (f is left after it)."""
    walk, lines = machine.walk, machine.walk.lines
    limit = ctx.limits.max_members * 100  # string constants per file
    key: str | None = None
    last: str | None = None
    pos = f.tell()
    try:
        ops = pickletools.genops(f)
        while True:
            try:
                opcode, arg, pos = next(ops)
            except StopIteration:
                break
            walk.ops += 1
            if not walk.ops & 0xFFF:
                ctx.tick()
            op = opcode.name
            resume = machine.step(op, arg, pos) if ctx.models else None
            if resume is not None:
                # joblib's array bytes follow in the stream: raw data is stepped over, an object
                # array's own pickle is walked, and the outer stream goes on after them
                key = _flush(lines, key)
                f.seek(resume)
                if resume == pos + 1 and depth < 2:
                    _walk_one(f, _Machine(machine.data, walk, machine.base), memo, ctx, depth + 1)
                    if walk.problem:
                        return
                ops = pickletools.genops(f)
                continue
            if op in NEUTRAL_OPS:
                continue
            if op in PUT_OPS or op == "MEMOIZE":
                if len(memo) < MAX_MEMO:
                    memo[len(memo) if op == "MEMOIZE" else arg] = last
                continue
            value = memo.get(arg) if op in GET_OPS else _as_text(op, arg)
            last = value
            if value is None:
                key = _flush(lines, key)
            elif key is None:
                key = value
            else:
                lines.append(f"{key} = {value}")
                key = None
            if len(lines) >= limit:
                walk.problem = f"string limit ({limit}) reached"
                break
    except Broken as exc:
        walk.problem = f"malformed pickle at offset {machine.base + pos}: {exc}"
    except Exception as exc:  # pickletools raises ValueError & co. on malformed input
        walk.problem = f"malformed pickle: {exc}"
    _flush(lines, key)


def _flush(lines: list[str], key: str | None) -> None:
    """The pending string, written alone; the key slot is empty after it."""
    if key is not None:
        lines.append(key)
    return None


def pickle_strings(data: bytes, name: str, ctx: Context, base: int = 0) -> Iterator[Child | Problem | Unsafe]:
    walk = walk_pickle(data, ctx, base)
    if walk.lines:
        yield Child("", "\n".join(walk.lines).encode("utf-8", "backslashreplace") + b"\n", "pickle-strings")
    yield from walk.found.values()
    problem = walk.problem
    if problem and (walk.lines or walk.found or name.lower().endswith(_PICKLE_NAMES)):
        if walk.found and problem.startswith("malformed"):
            problem += " (judged on the opcodes before it)"
        yield Problem(problem)
    return bool(walk.lines or walk.found) or problem is None


# --- numpy -------------------------------------------------------------------------------------

MAX_NPY_HEADER = 1 << 16
_OBJECT_CODE = lazy(r"^[|<>=]?O\d*$")


def npy_array(data: bytes, name: str, ctx: Context) -> Iterator[Child | Problem | Unsafe]:
    """A `.npy` array (alone or in an `.npz` zip): an object array (a dtype with `O`) is a pickle
    after the header, which `numpy.load(allow_pickle=True)` unpickles; other arrays are numbers."""
    if len(data) < 10:
        yield Problem("truncated .npy header")
        return False
    major = data[6]
    width = 2 if major == 1 else 4
    hlen = int.from_bytes(data[8 : 8 + width], "little")
    start = 8 + width + hlen
    if hlen > MAX_NPY_HEADER or start > len(data):
        yield Problem(f"bad .npy header length {hlen}")
        return True
    import ast

    try:
        header = ast.literal_eval(data[8 + width : start].decode("utf-8" if major >= 3 else "latin-1"))
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError, UnicodeDecodeError):
        yield Problem("unreadable .npy header")
        return True
    descr = header.get("descr") if isinstance(header, dict) else None
    if not _has_object(descr, 0):
        return False  # numbers: searched for encoded text as before
    yield from pickle_strings(data[start:], name + ".pkl", ctx, base=start)
    return True


def _has_object(descr, depth: int) -> bool:
    if isinstance(descr, str):
        return bool(_OBJECT_CODE.match(descr))
    if isinstance(descr, (list, tuple)) and depth < 32:
        return any(_has_object(d, depth + 1) for d in descr)
    return False
