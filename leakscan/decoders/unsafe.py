"""Model files that run code when they are loaded: what their imports are, and which Keras
layers carry code. The classification is data (model_imports.toml): dangerous, safe, and
unknown for everything else.

Nothing here imports, unmarshals or calls what it reads: an import is judged by its name.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .base import Child, Context, Problem, Unsafe

DANGEROUS, SAFE, UNKNOWN = "dangerous", "safe", "unknown"
SEVERITY = {DANGEROUS: "critical", UNKNOWN: "low"}
# protocols 0-2 name the builtins module as Python 2 did
_ALIASES = {"__builtin__": "builtins", "__builtins__": "builtins", "copy_reg": "copyreg"}
MAX_CONFIG = 16 << 20  # a Keras config's JSON text
MAX_NODES = 1 << 20  # JSON objects and lists walked in one config
MAX_CANDIDATES = 64  # places in an HDF5 file where a config might start
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_CONFIG_STARTS = (b'{"class_name"', b'{"module"')


@dataclass(frozen=True)
class Classes:
    dangerous_modules: tuple[str, ...]
    dangerous_names: frozenset[str]
    safe_modules: tuple[str, ...]
    safe_names: frozenset[str]
    code_layers: frozenset[str]


@lru_cache(maxsize=1)
def classes() -> Classes:
    import tomllib  # the first model file met pays for it, not every start

    data = tomllib.loads(Path(__file__).with_name("model_imports.toml").read_text(encoding="utf-8"))
    return Classes(tuple(data["dangerous"]["modules"]), frozenset(data["dangerous"]["names"]),
                   tuple(data["safe"]["modules"]), frozenset(data["safe"]["names"]),
                   frozenset(data["keras"]["code_layers"]))  # fmt: skip


def _under(path: str, modules: tuple[str, ...]) -> bool:
    return any(path == m or path.startswith(m + ".") for m in modules)


def qualified(module: str, name: str) -> str:
    return f"{_ALIASES.get(module, module)}.{name}"


@lru_cache(maxsize=4096)  # a checkpoint imports the same few names thousands of times
def classify(module: str, name: str) -> str:
    """dangerous | safe | unknown for `module.name` as an unpickler or Keras would resolve it.
    A dotted name is an attribute path from the module (protocol 4 qualnames), so the whole path
    is judged; one through a dunder attribute (`__globals__`, `__builtins__`) is dangerous."""
    c = classes()
    path = qualified(module, name)
    if path in c.dangerous_names or _under(path, c.dangerous_modules):
        return DANGEROUS
    parts = name.split(".")
    if len(parts) > 1 and any(p.startswith("__") and p.endswith("__") for p in parts):
        return DANGEROUS
    if path in c.safe_names or (_under(path.rsplit(".", 1)[0], c.safe_modules) and not name.startswith("__")):
        return SAFE
    return UNKNOWN


# --- Keras ---------------------------------------------------------------------------------------


def keras_problems(config) -> Iterator[tuple[str, str]]:
    """(severity, what) for each layer of a Keras model config that runs code when loaded: a
    Lambda layer (marshalled bytecode or a function looked up by name), and an object or
    function whose "module" Keras 3 imports, unless that module is on the allowlist. Nested
    models (a Functional inside a Sequential, wrappers) are walked whole."""
    c = classes()
    todo = [config]
    seen = 0
    while todo and seen < MAX_NODES:
        node = todo.pop()
        seen += 1
        if isinstance(node, list):
            todo.extend(reversed(node))
            continue
        if not isinstance(node, dict):
            continue
        cls = node.get("class_name")
        inner = node.get("config")
        if (isinstance(cls, str) and cls in c.code_layers) or (isinstance(inner, dict) and inner.get("function_type") == "lambda"):
            name = inner.get("name") if isinstance(inner, dict) else None
            code = " with marshalled code" if _marshalled(node) else ""
            kind = cls if isinstance(cls, str) else "Lambda"
            yield "critical", f"{kind} layer {name!r}{code}" if name else f"{kind} layer{code}"
            continue  # its function is part of it
        module = node.get("module")
        if isinstance(module, str) and isinstance(cls, str) and module:
            target = inner if cls == "function" and isinstance(inner, str) else cls
            verdict = classify(module, target)
            if verdict != SAFE:
                yield SEVERITY[verdict], f"{qualified(module, target)} (module imported by Keras)"
        todo.extend(v for v in reversed(node.values()) if isinstance(v, (dict, list)))


def _marshalled(layer: dict) -> bool:
    """A Lambda's function stored as base64 marshal data (Keras 2: a [code, defaults, closure]
    list; Keras 3: a nested `__lambda__` object with its `code`)."""
    inner = layer.get("config")
    fn = inner.get("function") if isinstance(inner, dict) else None
    if isinstance(fn, (list, tuple)):
        return bool(fn) and isinstance(fn[0], str)
    if isinstance(fn, dict):
        cfg = fn.get("config")
        return fn.get("class_name") == "__lambda__" or (isinstance(cfg, dict) and "code" in cfg)
    return isinstance(inner, dict) and inner.get("function_type") == "lambda"


def sniff_keras_config(data: bytes, name: str) -> bool:
    head = data[:4096]
    return name.lower().endswith(".json") and b'"class_name"' in data and head.lstrip()[:1] == b"{"


def keras_config(data: bytes, name: str, ctx: Context) -> Iterator[Child | Problem | Unsafe]:
    """A Keras model config (`config.json` of a `.keras` zip, `model.to_json()`): its layers
    that run code. Its text is scanned as text as well (returns False)."""
    if not ctx.models or len(data) > MAX_CONFIG:
        return False
    try:
        config = json.loads(data)
    except (ValueError, RecursionError):
        return False
    for severity, what in keras_problems(config):
        yield Unsafe("unsafe-model", severity, what)
    return False


def sniff_hdf5(data: bytes) -> bool:
    # the superblock sits at 0, or after a user block of 512, 1024, 2048 … bytes
    return data.startswith(HDF5_MAGIC) or any(data[n : n + 8] == HDF5_MAGIC for n in (512, 1024, 2048, 4096))


def hdf5_keras(data: bytes, name: str, ctx: Context) -> Iterator[Child | Problem | Unsafe]:
    """A legacy Keras H5 file: its `model_config` attribute is JSON text stored as is in the file,
    found without an HDF5 library where a config object starts and parses whole. The file is
    still searched for encoded text (returns False)."""
    if not ctx.models:
        return False
    decoder = json.JSONDecoder()
    tried = 0
    pos = 0
    for start in _config_starts(data):
        if start < pos:
            continue  # inside a config already read
        tried += 1
        if tried > MAX_CANDIDATES:
            yield Problem(f"HDF5: more than {MAX_CANDIDATES} places look like a Keras config; the rest not read")
            break
        ctx.tick()
        # attribute strings are NUL-terminated or padded: the JSON ends before the first NUL
        end = data.find(b"\x00", start, start + MAX_CONFIG)
        window = data[start : end if end >= 0 else start + MAX_CONFIG]
        ctx.spend(len(window))
        text = window.decode("utf-8", "replace")
        try:
            config, consumed = decoder.raw_decode(text)
        except (ValueError, RecursionError):
            continue
        pos = start + len(text[:consumed].encode("utf-8", "replace"))
        # training_config holds optimizer objects ({"class_name": "Adam"…}): judged the same way
        if isinstance(config, dict):
            for severity, what in keras_problems(config):
                yield Unsafe("unsafe-model", severity, what)
    return False


def _config_starts(data: bytes) -> Iterator[int]:
    pos = 0
    while True:
        found = [i for i in (data.find(s, pos) for s in _CONFIG_STARTS) if i >= 0]
        if not found:
            return
        pos = min(found)
        yield pos
        pos += 1
