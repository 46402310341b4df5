"""The decoders stage: the layers hidden inside a blob, decoded for the matcher.

    sources → decoders → matcher → findings

`decode(path, data)` yields every decoded layer of a blob — archive members, notebook cells and
outputs, pickle/safetensors/GGUF metadata strings, base64/hex/percent/\\u/UTF-16 encoded text —
recursively, and a `Skip` for anything it could not (fully) decode. The raw blob itself is not
yielded: the scanner scans it anyway. With `models=True` it also yields an `Unsafe` for what a
model file would run when loaded (pickle imports and calls, Keras code layers), its `name` the
container chain.

Input is attacker-controlled: nothing is unpickled, imported, executed or written to disk, and
every decompression, recursion, size and time is bounded by `Limits` (per top-level blob).
A limit that runs out for the whole blob (bytes, time) ends decoding with a Skip; a member-level
problem (ratio bomb, truncation, corruption, encryption) skips that member and carries on.

Containers are chained with '!': 'inner.zip!project/.env', 'notebook.ipynb!cell 3 output 1',
'config.yaml!base64@120'. The scanner prefixes the blob path. Compression wrappers (.tar.gz) are
transparent: a tar inside a gzip lists its members directly. Pickles inside archives (torch
`archive/data.pkl`) are replaced by their strings layer under the member's own name; the raw
tensor storages of torch checkpoints (`archive/data/0` …) are not decoded at all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace

from ..lazyre import lazy_import
from ..model import Skip
from .archives import (GZIP_MAGIC, SEVENZIP_MAGIC, XZ_MAGIC, ZIP_MAGICS, is_bz2, is_zlib, looks_tar, sevenzip_members,
                       stream, tar_members, zip_members)  # fmt: skip
from .base import Child, Context, Layer, LimitReached, Limits, Problem, Seen, Unsafe
from .encoded import find_encoded, utf16_encoding
from .gguf import gguf_metadata
from .lfs import is_lfs_pointer, lfs_oid
from .notebook import notebook_cells, sniff_notebook
from .safetensors import safetensors_metadata, sniff_safetensors
from .unsafe import hdf5_keras, keras_config, sniff_hdf5, sniff_keras_config

__all__ = ["Layer", "Limits", "Seen", "Unsafe", "decode", "is_lfs_pointer", "lfs_oid", "no_text_format", "no_text_reason",
           "plain_text", "sniff"]

# The pickle reader (with pickletools and the import classes) is a tenth of a start's imports,
# and a push of source files or a scan of a folder of them never needs it: it is imported the
# first time a blob may be a pickle or a numpy array.
pickles = lazy_import("leakscan.decoders.pickles")
NPY_MAGIC = b"\x93NUMPY"

Handler = Callable[[bytes, str, Context], Iterator[Child | Problem | Unsafe]]


def _pickle_strings(data: bytes, name: str, ctx: Context) -> Iterator[Child | Problem | Unsafe]:
    return pickles.pickle_strings(data, name, ctx)


def _npy_array(data: bytes, name: str, ctx: Context) -> Iterator[Child | Problem | Unsafe]:
    return pickles.npy_array(data, name, ctx)


HANDLERS: dict[str, Handler] = {
    "zip": zip_members,
    "tar": tar_members,
    "gzip": stream("gzip"),
    "bz2": stream("bz2"),
    "xz": stream("xz"),
    "zlib": stream("zlib"),
    "notebook": notebook_cells,
    "pickle": _pickle_strings,
    "safetensors": safetensors_metadata,
    "gguf": gguf_metadata,
    "7z": sevenzip_members,
    "npy": _npy_array,
    "hdf5": hdf5_keras,
    "keras-config": keras_config,
}
MEMBER_KINDS = frozenset({"zip-member", "tar-member", "7z-member"})


# Formats whose payload is compressed or pixel data, never text: a search of a large one for
# base64/hex/percent text is a pass over megabytes that cannot find any. Their raw bytes are
# still matched (a token in a PNG text chunk or JPEG comment is plain text there). Formats
# with string tables (executables, PDFs, audio tags) are not listed.
NO_TEXT_MAGICS = (
    (b"\x89PNG\r\n\x1a\n", "png image"),
    (b"\xff\xd8\xff", "jpeg image"),
    (b"GIF87a", "gif image"),
    (b"GIF89a", "gif image"),
    (b"wOFF", "woff font"),
    (b"wOF2", "woff2 font"),
    (b"7z\xbc\xaf\x27\x1c", "7z archive"),
    (b"Rar!\x1a\x07", "rar archive"),
    (b"\x28\xb5\x2f\xfd", "zstd stream"),
)
NO_TEXT_MIN_BYTES = 1 << 20  # smaller ones cost nothing to search (and would only add skips)


def no_text_format(data: bytes) -> str | None:
    """'png image', 'woff2 font', … for a blob in a known format with no text to decode."""
    for magic, kind in NO_TEXT_MAGICS:
        if data.startswith(magic):
            return kind
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp image"
    return None


def no_text_reason(kind: str) -> str:
    return f"{kind}: raw bytes scanned, not searched for encoded text (a format with no text layer)"


def sniff(data: bytes, name: str = "") -> str | None:
    """The structured format of a blob ('zip', 'gzip', 'notebook', 'pickle', …, 'lfs'), or None
    for text (or unknown binary)."""
    head = data[:16]
    lower = name.lower()
    if head.startswith(b"version https://") and is_lfs_pointer(data):
        return "lfs"
    if head[:4] in ZIP_MAGICS:
        return "zip"
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if is_bz2(head):
        return "bz2"
    if head.startswith(XZ_MAGIC):
        return "xz"
    if head.startswith(b"GGUF"):
        return "gguf"
    if head.startswith(SEVENZIP_MAGIC):
        return "7z"
    if is_zlib(head, lower):
        return "zlib"
    if head.startswith(NPY_MAGIC):
        return "npy"
    if looks_tar(data) or (lower.endswith(".tar") and len(data) >= 512):
        return "tar"
    if sniff_safetensors(data):
        return "safetensors"
    # a pickle named .safetensors is a pickle: the name is the attacker's to choose
    if may_be_pickle(data, lower) and pickles.sniff_pickle(data, lower):
        return "pickle"
    if lower.endswith(".safetensors"):
        return "safetensors"
    if sniff_hdf5(data):
        return "hdf5"
    if lower.endswith(".ipynb") or sniff_notebook(data):
        return "notebook"
    if sniff_keras_config(data, lower):
        return "keras-config"
    return None


def may_be_pickle(data: bytes, lower_name: str) -> bool:
    """What `pickles.sniff_pickle` needs before it can say yes, asked without the pickle reader:
    a protocol 2+ header, a pickle's name, or (a pickle without a header) STOP as the last byte
    before any line ends. A text that ends with a full stop passes, and is then parsed."""
    if data[:1] == b"\x80" or lower_name.endswith((".pkl", ".pickle")):
        return True
    tail = data[-256:].rstrip(b"\r\n")
    return tail[-1:] == b"." or (not tail and len(data) > 256)


_SNIFF = "?"


def decode(path: str, data: bytes, limits: Limits = Limits(), *, models: bool = False, fmt: str | None = _SNIFF,
           changed: Sequence[tuple[int, int]] | None = None, seen: Seen | None = None) -> Iterator[Layer | Skip | Unsafe]:  # fmt: skip
    """All decoded layers of a blob (NOT including the raw data itself, which the scanner scans
    anyway), recursively, within limits; with `models`, what model files in it run when loaded.
    `fmt`: what `sniff` said of the blob, if already asked. `changed`: for a blob that is
    `plain_text`, the spans that changed since an earlier version already scanned at the same
    path (see `versions`): encoded text is searched there only. `seen`: archive members decoded
    before, kept from blob to blob."""
    if is_lfs_pointer(data):
        return
    ctx = Context(limits, models, seen)
    try:
        yield from _expand(ctx, path, data, path, "", 0, 0, fmt, changed)
    except LimitReached as exc:
        yield Skip(path, exc.reason, exc.where or None)


def plain_text(data: bytes, fmt: str | None) -> bool:
    """Whether a blob `sniff` called `fmt` is searched for encoded text as it is, line by line:
    not structured, not a known format without text, not UTF-16 (searched once re-encoded)."""
    return fmt is None and (len(data) < NO_TEXT_MIN_BYTES or no_text_format(data) is None) and utf16_encoding(data) is None


def _join(chain: str, name: str | None) -> str:
    if not name:
        return chain
    return f"{chain}!{name}" if chain else name


def _expand(ctx: Context, path: str, data: bytes, name: str, chain: str, depth: int, enc: int,
            fmt: str | None = _SNIFF, changed: Sequence[tuple[int, int]] | None = None) -> Iterator[Layer | Skip]:  # fmt: skip
    """The layers below one layer (the blob itself at depth 0)."""
    try:
        ctx.tick()
        if fmt is _SNIFF:
            fmt = sniff(data, name)
        if fmt == "lfs":
            return
        structured = False
        if fmt is not None:
            if depth >= ctx.limits.max_depth:
                yield Skip(path, f"nesting depth limit ({ctx.limits.max_depth}) reached: {fmt} not decoded", chain or None)
                return
            ctx.level = (depth, enc)
            structured = yield from _run(ctx, path, HANDLERS[fmt](data, name, ctx), fmt, chain, depth, enc)
        if not structured and enc < ctx.limits.max_encoded_depth:
            kind = no_text_format(data) if len(data) >= NO_TEXT_MIN_BYTES else None
            if kind is not None:
                yield Skip(path, no_text_reason(kind), chain or None)
                return
            yield from _run(ctx, path, find_encoded(data, name, ctx, changed), "encoded-text", chain, depth, enc)
    except LimitReached as exc:
        if exc.where is None:
            exc.where = _join(chain, exc.member)
        raise


def _run(ctx: Context, path: str, items: Iterator[Child | Problem], fmt: str, chain: str, depth: int, enc: int):
    """Drive one handler: its problems become Skips, its children layers (and are expanded in
    turn). Returns whether the handler recognised its input (False: treat it as text)."""
    try:
        while True:
            try:
                item = next(items)
            except StopIteration as stop:
                return stop.value is not False
            if isinstance(item, Problem):
                if enc == 0:  # inside guessed base64/hex, a format that fails was likely no format
                    yield Skip(path, item.reason, _join(chain, item.name) or None)
            elif isinstance(item, Unsafe):
                yield replace(item, name=_join(chain, item.name) or None)
            else:
                yield from _child(ctx, path, item, chain, depth, enc)
    except (LimitReached, GeneratorExit):
        raise
    except Exception as exc:  # a decoder bug or an unforeseen error must not end the scan
        yield Skip(path, f"{fmt} decoder failed: {type(exc).__name__}: {exc}"[:500], chain or None)
        return True


def _child(ctx: Context, path: str, item: Child, chain: str, depth: int, enc: int) -> Iterator[Layer | Skip]:
    container = _join(chain, item.name) or item.kind
    if item.remembered is not None:
        yield from _replay(ctx, path, container, item.remembered)
        return
    if item.seen is not None:
        # what this member decodes to, kept (relative to it) for wherever it is met again; a
        # limit reached on the way ends the blob's decoding and nothing is kept
        kept: list[tuple[str, Layer | Skip | Unsafe]] = []
        size = 0
        for out in _decoded(ctx, path, item, container, depth, enc):
            rel = ((out.name if isinstance(out, Unsafe) else out.container) or "")[len(container):]
            if isinstance(out, Layer):
                out = Layer(out.container, out.data, out.kind, (item.seen, rel))
                size += len(out.data)
            kept.append((rel, out))
            yield out
        ctx.seen.put(item.seen, tuple(kept), size)
        return
    yield from _decoded(ctx, path, item, container, depth, enc)


def _replay(ctx: Context, path: str, container: str, remembered: tuple) -> Iterator[Layer | Skip | Unsafe]:
    """A member's layers as `_child` kept them, placed under `container`; they cost the budget
    what decoding them did."""
    for rel, out in remembered:
        ctx.tick()
        if isinstance(out, Layer):
            try:
                ctx.spend(len(out.data))
            except LimitReached as exc:
                exc.where = container + rel  # where decoding it ran out
                raise
            yield Layer(container + rel, out.data, out.kind, out.key)
        elif isinstance(out, Skip):
            yield Skip(path, out.reason, container + rel)
        else:
            yield replace(out, name=container + rel)


def _decoded(ctx: Context, path: str, item: Child, container: str, depth: int, enc: int) -> Iterator[Layer | Skip]:
    if item.encoded:
        if not item.counted:
            ctx.spend(len(item.data))
        yield Layer(container, item.data, item.kind)
        yield from _expand(ctx, path, item.data, item.name, container, depth, enc + 1)
        return
    if item.kind in MEMBER_KINDS and may_be_pickle(item.data, item.name.lower()) and sniff(item.data, item.name) == "pickle":
        # a pickle's raw opcodes are noise: its strings layer stands in for the member
        yield from _expand(ctx, path, item.data, item.name, container, depth + 1, enc)
        return
    if not item.counted:
        ctx.spend(len(item.data))
    yield Layer(container, item.data, item.kind)
    yield from _expand(ctx, path, item.data, item.name, container, depth + 1, enc)
