"""Archives and compressed streams: zip (incl. torch checkpoints), tar, gzip, bz2, xz.

Nothing is ever extracted to disk: members are decompressed in memory, in chunks, charging
every output byte to the blob's budget and checking each member's compression ratio as it
grows. Member names are only names (`../../etc/passwd` is reported as such).
"""

from __future__ import annotations

import hashlib
import io
import struct
import zlib
from collections.abc import Iterator

from ..lazyre import lazy, lazy_import
from .base import Child, Context, LimitReached, Problem, clean_name

# loaded when the first archive is met, not by every start
bz2 = lazy_import("bz2")
lzma = lazy_import("lzma")
tarfile = lazy_import("tarfile")
zipfile = lazy_import("zipfile")

IN_CHUNK = 64 << 10
OUT_CHUNK = 1 << 20
RATIO_FLOOR = 1 << 20  # the ratio is only judged once a member has produced this much
MAX_LZMA_MEMORY = 128 << 20  # xz/lzma dictionaries above this are refused
MAX_STREAMS = 1024  # concatenated gzip/bz2/xz members in one file

LOCAL = b"PK\x03\x04"
CENTRAL = b"PK\x01\x02"
EOCD = b"PK\x05\x06"
ZIP_MAGICS = (LOCAL, EOCD)
GZIP_MAGIC = b"\x1f\x8b"
XZ_MAGIC = b"\xfd7zXZ\x00"
_TORCH_STORAGE = lazy(r"(?:^|/)data/\d+$")  # raw tensor bytes in a torch checkpoint zip
_COMPRESSED_SUFFIXES = {
    "gzip": (".gz", ".gzip", ".tgz"), "bz2": (".bz2", ".tbz2", ".tbz"), "xz": (".xz", ".txz"), "zlib": (".z",),
}  # fmt: skip
ZLIB_NAMES = (".joblib", ".jbl", ".z", ".pkl", ".pickle")  # joblib's zlib-compressed dumps: a bare zlib stream

Item = Child | Problem


def is_bz2(data: bytes) -> bool:
    return data[:3] == b"BZh" and data[3:4].isdigit() and data[4:10] in (b"1AY&SY", b"\x17rE8P\x90")


def is_zlib(head: bytes, name: str) -> bool:
    """A bare zlib stream (as joblib compresses): only under a name that says so, as two bytes
    are little evidence."""
    return (len(head) >= 2 and head[0] == 0x78 and (head[0] << 8 | head[1]) % 31 == 0
            and name.lower().endswith(ZLIB_NAMES))  # fmt: skip


def looks_tar(data: bytes) -> bool:
    return len(data) >= 512 and data[257:262] == b"ustar"


# --- streaming decompression -------------------------------------------------------------------


def inflate(d, src: memoryview, ctx: Context) -> tuple[bytes, str | None, int]:
    """Run decompressor `d` over `src` in chunks: (output, problem or None, input bytes consumed).

    Every output chunk is charged to the budget (LimitReached propagates); the member stops with
    a problem when its ratio passes `max_ratio`, or when the input ends before the stream does."""
    is_zlib = hasattr(d, "unconsumed_tail")
    max_ratio = ctx.limits.max_ratio
    out: list[bytes] = []
    produced = pos = stalls = 0
    pending: memoryview | bytes = b""
    problem = None
    while True:
        ctx.tick()
        if is_zlib:
            if not pending:
                if pos >= len(src):
                    break
                pending = src[pos : pos + IN_CHUNK]
                pos += len(pending)
            piece = d.decompress(pending, OUT_CHUNK)
            pending = d.unconsumed_tail
        elif d.needs_input:
            if pos >= len(src):
                break
            chunk = src[pos : pos + IN_CHUNK]
            pos += len(chunk)
            piece = d.decompress(chunk, OUT_CHUNK)
        else:
            piece = d.decompress(b"", OUT_CHUNK)
        if piece:
            stalls = 0
            ctx.spend(len(piece))
            out.append(piece)
            produced += len(piece)
        else:
            stalls += 1
            if stalls > 1000:  # pragma: no cover - defensive against a decompressor that spins
                problem = "decompressor made no progress"
                break
        if d.eof:
            break
        consumed = pos - len(pending)
        if produced > RATIO_FLOOR and produced > max_ratio * max(consumed, 1):
            problem = (f"compression ratio limit ({max_ratio:g}x) exceeded: stopped after "
                       f"{produced} bytes from {consumed}")  # fmt: skip
            break
    if problem is None and not d.eof:
        problem = "truncated: the compressed stream ends early"
    consumed = pos - len(pending) - (len(d.unused_data) if d.eof else 0)
    return b"".join(out), problem, consumed


def _decompressor(kind: str, src: memoryview):
    """(decompressor, bytes of src to skip) for a zip method / stream kind, or a problem string."""
    if kind in ("deflate", 8):
        return zlib.decompressobj(-15), 0
    if kind == "gzip":
        return zlib.decompressobj(31), 0
    if kind in ("bz2", 12):
        return bz2.BZ2Decompressor(), 0
    if kind == "xz":
        return lzma.LZMADecompressor(lzma.FORMAT_XZ, memlimit=MAX_LZMA_MEMORY), 0
    if kind == 14:  # zip's lzma: version(2) props-size(2) props, then a raw LZMA1 stream
        if len(src) < 9:
            return "truncated lzma member header"
        (psize,) = struct.unpack_from("<H", src, 2)
        props = bytes(src[4 : 4 + psize])
        if psize != 5 or len(props) != 5:
            return "bad lzma properties"
        if int.from_bytes(props[1:5], "little") > MAX_LZMA_MEMORY:
            return "lzma dictionary too large"
        try:
            filt = lzma._decode_filter_properties(lzma.FILTER_LZMA1, props)  # noqa: SLF001
            return lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=[filt]), 4 + psize
        except (lzma.LZMAError, ValueError) as exc:
            return f"bad lzma properties: {exc}"
    return f"unsupported compression method {kind}"


def decompress_member(method: int, src: memoryview, expected: int | None,
                      ctx: Context) -> tuple[bytes, str | None, int]:  # fmt: skip
    """(data, problem, consumed) for one zip member's compressed bytes."""
    if method == 0:
        if expected is None:
            return b"", "stored member of unknown size", 0
        data = bytes(src[:expected])
        ctx.spend(len(data))
        return data, None if len(data) == expected else "truncated member", len(data)
    made = _decompressor(method, src)
    if isinstance(made, str):
        return b"", made, 0
    d, skip = made
    try:
        out, problem, consumed = inflate(d, src[skip:], ctx)
    except (zlib.error, OSError, EOFError, lzma.LZMAError, ValueError) as exc:
        return b"", f"corrupt compressed data: {exc}", 0
    if problem and problem.startswith("truncated") and expected is not None and len(src) >= expected:
        problem = "corrupt member: the compressed stream does not end where the zip says"
    return out, problem, consumed + skip


# --- zip ---------------------------------------------------------------------------------------


def _zip64_counts(data: bytes, eocd: int) -> tuple[int, int] | None:
    loc = eocd - 20
    if loc < 0 or data[loc : loc + 4] != b"PK\x06\x07":
        return None
    (rec,) = struct.unpack_from("<Q", data, loc + 8)
    if rec + 56 > len(data) or data[rec : rec + 4] != b"PK\x06\x06":
        return None
    count, size = struct.unpack_from("<QQ", data, rec + 32)
    return count, size


def _central(data: bytes, max_members: int) -> tuple[list[zipfile.ZipInfo] | None, str | None]:
    """The central directory via zipfile, when it exists and is of a sane size."""
    eocd = data.rfind(EOCD, max(0, len(data) - (22 + 0xFFFF)))
    if eocd < 0 or eocd + 22 > len(data):
        return None, "truncated or corrupt zip: no end-of-central-directory record; members read from local headers"
    count, cd_size = struct.unpack_from("<HI", data, eocd + 10)
    if count == 0xFFFF or cd_size == 0xFFFFFFFF:
        z64 = _zip64_counts(data, eocd)
        if z64:
            count, cd_size = z64
    if count > max_members or cd_size > max_members * 1024:
        return None, f"member limit ({max_members}) exceeded ({count} members); reading the first {max_members}"
    try:
        infos = zipfile.ZipFile(io.BytesIO(data)).infolist()
    except Exception as exc:  # zipfile raises a zoo of errors on hostile input
        return None, f"corrupt zip central directory ({exc}); members read from local headers"
    if len(infos) > max_members:
        return infos[:max_members], f"member limit ({max_members}) exceeded ({len(infos)} members)"
    return infos, None


def zip_name(raw: bytes, flags: int) -> str:
    """Names are UTF-8 when flagged (or valid UTF-8 anyway, as many tools write), else cp437."""
    if not flags & 0x800:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            return clean_name(raw.decode("cp437"))
    return clean_name(raw)


def _zip_name(zi: zipfile.ZipInfo) -> str:
    flagged = zi.flag_bits & 0x800
    return zip_name(zi.orig_filename.encode("utf-8" if flagged else "cp437", "surrogateescape"), zi.flag_bits)


def _local_start(data: bytes, offset: int) -> int | None:
    if offset < 0 or data[offset : offset + 4] != LOCAL or offset + 30 > len(data):
        return None
    nlen, xlen = struct.unpack_from("<HH", data, offset + 26)
    return offset + 30 + nlen + xlen


def zip_members(data: bytes, name: str, ctx: Context) -> Iterator[Item]:
    limits = ctx.limits
    level = ctx.level  # taken before any member is expanded (which sets it again)
    infos, note = _central(data, limits.max_members)
    if infos is None:
        yield Problem(note or "corrupt zip")
        yield from _local_walk(data, ctx)
        return True
    if note:
        yield Problem(note)
    torch = any(zi.filename.rsplit("/", 1)[-1] == "data.pkl" for zi in infos)
    # members whose compressed bytes overlap another's are a known bomb construction
    spans = sorted((zi.header_offset, zi.header_offset + 30 + zi.compress_size) for zi in infos)
    if any(b[0] < a[1] for a, b in zip(spans, spans[1:])):
        yield Problem("overlapping zip members (a zip bomb construction); not decoded")
        return True
    mv = memoryview(data)
    for zi in infos:
        ctx.tick()
        if zi.is_dir() or (torch and _TORCH_STORAGE.search(zi.filename)):
            continue
        mname = _zip_name(zi)
        if zi.flag_bits & 1:
            yield Problem("encrypted member", mname)
            continue
        start = _local_start(data, zi.header_offset)
        if start is None:
            yield Problem("bad local header", mname)
            continue
        compressed = mv[start : start + zi.compress_size]
        key = None
        if ctx.seen is not None:
            key = (hashlib.blake2b(compressed, digest_size=20).digest(), zi.compress_type, zi.file_size, mname, level)
            remembered = ctx.seen.get(key)
            if remembered is not None:
                yield Child(mname, b"", "zip-member", counted=True, seen=key, remembered=remembered)
                continue
        try:
            out, problem, _ = decompress_member(zi.compress_type, compressed, zi.compress_size, ctx)
        except LimitReached as exc:
            exc.member = mname
            raise
        if out:  # a member with a problem is decoded again wherever it is met, so it is reported there
            yield Child(mname, out, "zip-member", counted=True, seen=None if problem else key)
        if problem:
            yield Problem(problem, mname)
    return True


def _local_walk(data: bytes, ctx: Context) -> Iterator[Item]:
    """Members from the local headers in order: for zips without a usable central directory."""
    mv = memoryview(data)
    pos = count = 0
    torch = False  # a data.pkl came first: the raw tensor storages after it are stepped over
    while True:
        ctx.tick()
        sig = data[pos : pos + 4]
        if sig != LOCAL:
            if sig not in (CENTRAL, EOCD, b"PK\x06\x06") and pos < len(data):
                yield Problem(f"corrupt zip: no member header at offset {pos}")
            return
        if pos + 30 > len(data):
            yield Problem(f"truncated zip: member header at offset {pos} is cut off")
            return
        flags, method = struct.unpack_from("<HH", data, pos + 6)
        csize, usize, nlen, xlen = struct.unpack_from("<IIHH", data, pos + 18)
        raw_name = data[pos + 30 : pos + 30 + nlen]
        extra = data[pos + 30 + nlen : pos + 30 + nlen + xlen]
        start = pos + 30 + nlen + xlen
        mname = zip_name(raw_name, flags)
        if start > len(data):
            yield Problem("truncated zip: member header is cut off", mname)
            return
        if csize == 0xFFFFFFFF:  # zip64: sizes in extra field 0x0001
            i = 0
            while i + 4 <= len(extra):
                tag, size = struct.unpack_from("<HH", extra, i)
                if tag == 1 and size >= 16:
                    usize, csize = struct.unpack_from("<QQ", extra, i + 4)
                    break
                i += 4 + size
        count += 1
        if count > ctx.limits.max_members:
            yield Problem(f"member limit ({ctx.limits.max_members}) exceeded")
            return
        described = bool(flags & 8) and csize == 0  # sizes follow the data
        torch |= mname.rsplit("/", 1)[-1] == "data.pkl"
        if torch and not described and _TORCH_STORAGE.search(mname):
            pos = start + csize
            continue
        if flags & 1:
            yield Problem("encrypted member", mname)
            if described:
                return
            pos = start + csize
            continue
        expected = None if described else csize
        src = mv[start:] if described else mv[start : start + csize]
        try:
            out, problem, consumed = decompress_member(method, src, expected, ctx)
        except LimitReached as exc:
            exc.member = mname
            raise
        if out and not mname.endswith("/"):
            yield Child(mname, out, "zip-member", counted=True)
        if problem:
            yield Problem(problem, mname)
            if described or start + csize > len(data):
                return  # the end of the member is unknown, or past the end of the data
        if described:
            pos = start + consumed
            if data[pos : pos + 4] == b"PK\x07\x08":
                pos += 4
            pos += 12
            if data[pos : pos + 4] not in (LOCAL, CENTRAL, EOCD) and data[pos + 8 : pos + 12] in (LOCAL, CENTRAL, EOCD):
                pos += 8  # zip64 descriptor
        else:
            pos = start + csize


# --- tar ---------------------------------------------------------------------------------------


def tar_members(data: bytes, name: str, ctx: Context) -> Iterator[Item]:
    try:
        tf = tarfile.open(fileobj=io.BytesIO(data), mode="r:")
    except Exception as exc:
        yield Problem(f"corrupt tar: {exc}")
        return True
    count = 0
    while True:
        ctx.tick()
        try:
            ti = tf.next()
        except Exception as exc:
            yield Problem(f"corrupt tar after {count} members: {exc}")
            return True
        if ti is None:
            return True
        count += 1
        if count > ctx.limits.max_members:
            yield Problem(f"member limit ({ctx.limits.max_members}) exceeded")
            return True
        if not ti.isreg():
            continue
        mname = clean_name(ti.name)
        chunk = data[ti.offset_data : ti.offset_data + ti.size]
        if chunk:
            yield Child(mname, chunk, "tar-member")
        if len(chunk) < ti.size:
            yield Problem(f"truncated tar: member has {len(chunk)} of {ti.size} bytes", mname)
            return True


# --- single-stream compressors -----------------------------------------------------------------


def _stem(name: str, kind: str) -> str:
    base = name.rsplit("/", 1)[-1]
    lower = base.lower()
    for suffix in _COMPRESSED_SUFFIXES[kind]:
        if lower.endswith(suffix) and len(base) > len(suffix):
            stem = base[: -len(suffix)]
            return stem + ".tar" if suffix[1] == "t" else stem
    return kind


def _new(kind: str):
    if kind == "gzip":
        return zlib.decompressobj(31)
    if kind == "zlib":
        return zlib.decompressobj(15)
    if kind == "bz2":
        return bz2.BZ2Decompressor()
    return lzma.LZMADecompressor(lzma.FORMAT_XZ, memlimit=MAX_LZMA_MEMORY)


def _starts(kind: str, data: memoryview) -> bool:
    head = bytes(data[:10])
    if kind == "zlib":
        return False  # one stream: what follows it is not another
    return head.startswith(GZIP_MAGIC) if kind == "gzip" else is_bz2(head) if kind == "bz2" else head.startswith(XZ_MAGIC)


def stream(kind: str):
    """A handler for a gzip/bz2/xz file (concatenated streams included); a tar inside is opened."""

    def handler(data: bytes, name: str, ctx: Context) -> Iterator[Item]:
        mv = memoryview(data)
        parts: list[bytes] = []
        pos = streams = 0
        problem = None
        while True:
            streams += 1
            try:
                out, problem, consumed = inflate(_new(kind), mv[pos:], ctx)
            except LimitReached as exc:
                exc.member = _stem(name, kind)
                raise
            except (zlib.error, OSError, EOFError, lzma.LZMAError, ValueError) as exc:
                out, problem, consumed = b"", f"corrupt {kind} data: {exc}", 0
            parts.append(out)
            pos += consumed
            if problem or streams >= MAX_STREAMS:
                break
            rest = mv[pos:]
            if not _starts(kind, rest):
                if kind == "xz":  # xz streams may be followed by 4-byte-aligned padding
                    while pos < len(data) and data[pos] == 0:
                        pos += 1
                    if _starts(kind, mv[pos:]):
                        continue
                break
        out = b"".join(parts)
        stem = _stem(name, kind)
        if problem:
            problem = f"{kind}: {problem}" if not problem.startswith("truncated") else f"truncated {kind} stream: the compressed data ends early; decoded {len(out)} bytes"
        if out and (looks_tar(out) or stem.lower().endswith(".tar")):
            had_members = False
            for item in tar_members(out, stem, ctx):
                had_members |= isinstance(item, Child)
                yield item
            if had_members or looks_tar(out):
                if problem:
                    yield Problem(problem)
                return True
        if out:
            yield Child(stem, out, kind, counted=True)
        if problem:
            yield Problem(problem, stem if out else None)
        return True

    return handler


# --- 7z ----------------------------------------------------------------------------------------

SEVENZIP_MAGIC = b"7z\xbc\xaf\x27\x1c"


class _Budget(Exception):
    """A 7z member's output passed what the blob's budget or the ratio allows."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def sevenzip_members(data: bytes, name: str, ctx: Context) -> Iterator[Item]:
    """A 7z archive (torch files wrapped in 7z evade scanners that only open zips), read with
    py7zr into memory: every output byte is charged to the blob's budget as it is written, and
    the whole archive's output may not pass `max_ratio` times its size."""
    import py7zr
    from py7zr.io import Py7zIO, WriterFactory

    cap = max(int(len(data) * ctx.limits.max_ratio), RATIO_FLOOR)
    written = [0]

    class Sink(Py7zIO):
        def __init__(self) -> None:
            self.buf = io.BytesIO()

        def write(self, s) -> int:
            written[0] += len(s)
            if written[0] > cap:
                raise _Budget(f"compression ratio limit ({ctx.limits.max_ratio:g}x) exceeded")
            try:
                ctx.spend(len(s))
                ctx.tick()
            except LimitReached as exc:
                raise _Budget(exc.reason) from None
            return self.buf.write(s)

        def read(self, size: int | None = None) -> bytes:
            return self.buf.read(size)

        def seek(self, offset: int, whence: int = 0) -> int:
            return self.buf.seek(offset, whence)

        def flush(self) -> None:
            pass

        def size(self) -> int:
            return self.buf.getbuffer().nbytes

    class Sinks(WriterFactory):
        def __init__(self) -> None:
            self.made: list[tuple[str, Sink]] = []

        def create(self, filename: str) -> Py7zIO:
            sink = Sink()
            self.made.append((filename, sink))
            return sink

    sinks = Sinks()
    problem = None
    try:
        with py7zr.SevenZipFile(io.BytesIO(data), mode="r") as archive:
            if archive.needs_password():
                yield Problem("encrypted 7z archive")
                return True
            infos = archive.list()
            if len(infos) > ctx.limits.max_members:
                yield Problem(f"member limit ({ctx.limits.max_members}) exceeded ({len(infos)} members)")
                return True
            archive.extractall(factory=sinks)
    except _Budget as exc:
        problem = exc.reason
    except Exception as exc:  # py7zr raises a zoo of errors on hostile input
        problem = f"corrupt 7z archive: {type(exc).__name__}: {exc}"[:300]
    for fname, sink in sinks.made:
        out = sink.buf.getvalue()
        if out:
            yield Child(clean_name(fname), out, "7z-member", counted=True)
    if problem:
        if problem.startswith("decoded-size limit") or problem.startswith("time limit"):
            raise LimitReached(problem)
        yield Problem(problem)
    return True
