"""Source: the git-lfs content a Hub repository's pointers name — where the Hub keeps
`training_args.bin`, pickles, archives, TensorBoard logs and weights.

Every pointer blob of every ref's history is known by its sha256 oid and size. What can hold a
secret is fetched through the Hub's git-lfs batch API and scanned as if it sat at the pointer's
places (container `lfs`). The batch API rather than huggingface_hub's `hf_hub_download`: it is
git-lfs's own protocol (any LFS host, and the Hub's LFS bridge for Xet-backed files), names
many objects in one request, and leaves the download to us — bounded in bytes and time, range
reads, sha256 checked — where `hf_hub_download` follows redirects itself, fills the HF cache and
has no byte limit. An object the batch API does not give is read through the file's
`/resolve/{commit}/{path}` instead, the route `hf_hub_download` uses (one redirect followed, to a
trusted host):

- anything up to SMALL_OBJECT whole;
- pickles, notebooks, text, tfevents and tar/gzip archives whole, up to the per-object cap
  (`LfsOptions.max_object_bytes`);
- zip files (torch checkpoints: `pytorch_model.bin`, `*.pt`) above SMALL_OBJECT through HTTP
  range reads: the central directory and the members that are not tensor storage;
- safetensors and GGUF above SMALL_OBJECT by their header only (range reads), at any size;
- other large `.bin`/`.pt` files that are pickles (torch's legacy format) by their first
  PICKLE_PREFIX bytes, where the pickle and its strings sit before the tensor storages;
- anything else: counted, not fetched (one skip per repository says how many and how large).

Each object is downloaded at most once, ever: a content-addressed cache by oid (partial reads
under their own id; bounded, least recently used evicted) serves later scans of any repository, and the scan cache (keyed by oid)
skips objects already scanned clean without touching the network. Nothing fetched is executed
or unpickled; every request is bounded in bytes and time and its content's sha256 verified.

HTTP goes through the guarded client (`leakscan.net.Session`) to the Hub endpoint the user
configured, or to the `href` the Hub's batch answer gives (the Hub names its storage host,
scanned content never does); redirects are not followed, the Hub token goes to the endpoint's
own host only (an href gets the headers the batch answer gave for it), and an href at a private
or loopback address is refused, checked on the address connected to, unless the configured
endpoint is private itself (a self-hosted Hub or the loopback stand-in).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from urllib.parse import quote, urljoin, urlsplit

from ..decoders.lfs import MAX_POINTER, lfs_oid
from ..model import Finding, Place, Skip
from ..net import NetError, Refused, Session, resolves_private
from ..paths import cache_root
from ..textsafe import reason
from .base import Blob, Opened, Source

SMALL_OBJECT = 1 << 20  # fetched whole whatever its kind: cheap, and a config or text file
SNIFF = 64 << 10  # first bytes read of a large object of unclear kind
PICKLE_PREFIX = 4 << 20  # a large pickle (a legacy torch file) is read this far
HEADER_LIMIT = 16 << 20  # a safetensors JSON header or GGUF metadata prefix read at most
ZIP_READ_LIMIT = 16 << 20  # bytes range-read from one large zip (directory and small members)
HTTP_TIMEOUT = 30.0  # per socket operation
OBJECT_DEADLINE = 300.0  # one object's whole download
CACHE_BYTES = 2 << 30
_SIZE = re.compile(rb"^size ([0-9]{1,15})$", re.M)

# Kinds fetched whole up to the cap (by the pointer's path): what people save secrets into.
_WHOLE_EXT = frozenset({
    "pkl", "pickle", "joblib", "dill", "ipynb", "txt", "json", "jsonl", "yaml", "yml", "md", "py", "sh", "cfg",
    "ini", "toml", "env", "csv", "tsv", "log", "xml", "html", "tar", "gz", "tgz", "bz2", "xz", "tfevents",
})  # fmt: skip
# Read by range above SMALL_OBJECT: headers of weights, directories of zips (torch files).
_PARTIAL_EXT = frozenset({"safetensors", "gguf", "zip", "bin", "pt", "pth", "ckpt"})
_TENSOR_MEMBER = re.compile(r"(^|/)data/\d+$")  # torch zip storages: raw tensor bytes


@dataclass(frozen=True)
class LfsOptions:
    enabled: bool = True
    max_object_bytes: int = 64 << 20  # fetched whole at most this large (`--max-lfs-mb`)
    repo_budget: int = 512 << 20  # bytes downloaded for one repository at most
    progress: bool = False  # objects and bytes fetched, on a terminal


class LfsError(Exception):
    """One object could not be fetched: the reason, for a skip."""


# ---- HTTP ---------------------------------------------------------------------------------------------


def read_bounded(resp, limit: int, deadline: float, sink) -> int:
    """Copy at most `limit` bytes of `resp` to `sink`; LfsError past the limit or the deadline."""
    got = 0
    while True:
        chunk = resp.read(min(1 << 20, limit + 1 - got))
        if not chunk:
            return got
        got += len(chunk)
        if got > limit:
            raise LfsError(f"more than the announced {limit} bytes")
        if time.monotonic() > deadline:
            raise LfsError(f"download took longer than {OBJECT_DEADLINE:.0f} s")
        sink(chunk)


# ---- the content cache ------------------------------------------------------------------------------


@dataclass
class ContentCache:
    """Fetched LFS content by oid (partial reads by `part_key(oid)`), files 0600 in 0700
    directories, at most `max_bytes`: the least recently used go first."""

    root: Path
    max_bytes: int = CACHE_BYTES
    _total: int | None = None  # bytes held, counted once per process, then kept up to date

    @classmethod
    def default(cls) -> ContentCache:
        mb = os.environ.get("LEAKSCAN_LFS_CACHE_MB", "")
        return cls(cache_root() / "lfs", int(mb) << 20 if mb.isdigit() else CACHE_BYTES)

    def path(self, name: str) -> Path:
        return self.root / name[:2] / name[2:4] / name

    def get(self, name: str) -> Path | None:
        path = self.path(name)
        try:
            os.utime(path)  # recently used: kept longest
        except OSError:
            return None
        return path

    def put(self, name: str, write) -> Path:
        """`write(fh)` fills a temporary file; it becomes `name` atomically."""
        path = self.path(name)
        old = os.umask(0o077)
        try:
            for d in (self.root, path.parent.parent, path.parent):
                d.mkdir(mode=0o700, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".part-")
            try:
                with os.fdopen(fd, "wb") as fh:
                    write(fh)
                os.replace(tmp, path)
            except BaseException:
                os.unlink(tmp)
                raise
        finally:
            os.umask(old)
        if self._total is None:
            self.evict(keep=path)
        else:
            self._total += path.stat().st_size
            if self._total > self.max_bytes:
                self.evict(keep=path)
        return path

    def evict(self, keep: Path | None = None) -> None:
        """The least recently used files go until the cache fits (other processes' files
        included: the count is of what is on disk)."""
        entries = []
        for dirpath, _, files in os.walk(self.root):
            for f in files:
                p = Path(dirpath) / f
                try:
                    st = p.stat()
                except OSError:
                    continue
                entries.append((st.st_mtime, st.st_size, p))
        total = sum(e[1] for e in entries)
        for _, size, p in sorted(entries, key=lambda e: e[0]):
            if total <= self.max_bytes:
                break
            if p != keep:
                p.unlink(missing_ok=True)
                total -= size
        self._total = total


# ---- the Hub's LFS endpoints ---------------------------------------------------------------------------


@dataclass
class LfsClient:
    """Downloads through the Hub's git-lfs batch API (the same URLs git-lfs uses, so any git host
    serving LFS works, and Xet-backed Hub repos answer through their LFS bridge)."""

    repo_url: str  # {endpoint}/{prefix}{repo_id}
    endpoint: str
    token: str | None
    cache: ContentCache
    batch_api: bool = True  # False: every object through its `fallbacks` URL (storage buckets)
    fetched_bytes: int = 0
    _hrefs: dict[str, tuple[str, dict[str, str]]] = field(default_factory=dict)

    @cached_property
    def net(self) -> Session:
        # the batch answer's hrefs: any public https host the Hub names (its CDN); private or
        # loopback ones only when the configured endpoint is itself private, its storage as
        # private as it is
        home = urlsplit(self.endpoint).hostname
        return Session([self.endpoint], timeout=None, read_timeout=HTTP_TIMEOUT,
                       private_network=bool(home) and resolves_private(home))  # fmt: skip

    def refusal(self, url: str) -> str | None:
        """Why a download location is refused before any request; None: it may be asked (the
        address connected to is checked again then)."""
        try:
            self.net.check(url)
        except Refused as exc:
            return f"refused download location {urlsplit(url).hostname or '?'} ({str(exc).removeprefix('refused: ')})"
        return None

    def close(self) -> None:
        if "net" in self.__dict__:
            self.net.close()

    def locate(self, objects: Sequence[tuple[str, int]], fallbacks: dict[str, str] | None = None) -> dict[str, str]:
        """Ask the batch API where `objects` (oid, size) are; errors by oid (the rest are ready).
        An object the batch API does not give is read through its `fallbacks` URL instead (the
        file's `/resolve/{commit}/{path}` on the endpoint), when there is one."""
        errors: dict[str, str] = {}
        todo = [(o, s) for o, s in objects if o not in self._hrefs]
        for i in range(0, len(todo) if self.batch_api else 0, 100):
            part = todo[i:i + 100]
            body = json.dumps({"operation": "download", "transfers": ["basic"], "hash_algo": "sha256",
                               "objects": [{"oid": o, "size": s} for o, s in part]}).encode()  # fmt: skip
            headers = {"Accept": "application/vnd.git-lfs+json", "Content-Type": "application/vnd.git-lfs+json"}
            if self.token:
                headers["Authorization"] = f"Bearer {self.token}"
            try:
                buf = io.BytesIO()
                with self.net.open("POST", f"{self.repo_url}.git/info/lfs/objects/batch", headers, body) as resp:
                    read_bounded(resp, 4 << 20, time.monotonic() + OBJECT_DEADLINE, buf.write)
                if resp.status != 200:
                    raise LfsError(f"the LFS batch API answered HTTP {resp.status}")
                answer = json.loads(buf.getvalue())
            except (OSError, ValueError, LfsError, NetError) as exc:
                for o, _ in part:
                    errors[o] = reason(exc)
                continue
            for obj in answer.get("objects", []) if isinstance(answer, dict) else []:
                oid = obj.get("oid") if isinstance(obj, dict) else None
                if not isinstance(oid, str):
                    continue
                action = (obj.get("actions") or {}).get("download") or {}
                href = action.get("href")
                if isinstance(obj.get("error"), dict) or not isinstance(href, str):
                    errors[oid] = f"the LFS server has no such object ({(obj.get('error') or {}).get('code', '?')})"
                elif (refused := self.refusal(href)) is not None:
                    errors[oid] = refused
                else:
                    hdrs = action.get("header") if isinstance(action.get("header"), dict) else {}
                    self._hrefs[oid] = (href, {str(k): str(v) for k, v in hdrs.items()})
        for o, _ in todo:
            if o not in self._hrefs and o not in errors:
                errors[o] = "the LFS batch answer left it out" if self.batch_api else "no download location"
        for o in list(errors):
            if fallbacks and o in fallbacks:
                self._hrefs[o] = (fallbacks[o], {})
                del errors[o]
        return errors

    def _open(self, oid: str, start: int | None = None, end: int | None = None):
        href, headers = self._hrefs[oid]
        headers = dict(headers)  # the href's own headers; never the Hub token to another host
        if not headers and self.token and urlsplit(href).netloc == urlsplit(self.endpoint).netloc:
            headers["Authorization"] = f"Bearer {self.token}"
        if start is not None:
            headers["Range"] = f"bytes={start}-{end}"
        resp = self.net.open("GET", href, headers)
        if resp.status in (301, 302, 303, 307, 308) and _is_resolve(href):
            # /resolve/ answers with the storage location, as for hf_hub_download: one hop, to
            # a trusted host, without the Hub token unless it is the endpoint's own host
            target = urljoin(href, resp.headers.get("Location", ""))
            resp.close()
            if (refused := self.refusal(target)) is not None:
                raise LfsError(refused)
            if urlsplit(target).netloc != urlsplit(self.endpoint).netloc:
                headers.pop("Authorization", None)
            resp = self.net.open("GET", target, headers)
        want = 206 if start is not None else 200
        if resp.status != want:
            resp.close()
            raise LfsError(f"download answered HTTP {resp.status}")
        return resp

    def download(self, oid: str, size: int) -> Path:
        """The whole object, from the cache or fetched now (sha256 and size verified)."""
        if (hit := self.cache.get(oid)) is not None:
            return hit
        if (err := self.locate([(oid, size)]).get(oid)) is not None:
            raise LfsError(err)
        deadline = time.monotonic() + OBJECT_DEADLINE

        def write(fh) -> None:
            h = hashlib.sha256()

            def sink(chunk: bytes) -> None:
                h.update(chunk)
                fh.write(chunk)

            with self._open(oid) as resp:
                got = read_bounded(resp, size, deadline, sink)
            self._count(got)
            if got != size or self.batch_api and h.hexdigest() != oid:
                # a bucket's object id is a Xet hash, not a sha256: its size is what can be checked
                raise LfsError("the content does not match its pointer (sha256 or size)")

        try:
            return self.cache.put(oid, write)
        except (OSError, ValueError, NetError) as exc:
            raise LfsError(reason(exc)) from None

    def range(self, oid: str, start: int, end: int) -> bytes:
        """Bytes start..end (inclusive) of the object."""
        if (err := self.locate([(oid, 0)]).get(oid)) is not None:
            raise LfsError(err)
        buf = bytearray()
        try:
            with self._open(oid, start, end) as resp:
                got = read_bounded(resp, end - start + 1, time.monotonic() + OBJECT_DEADLINE, buf.extend)
        except (OSError, ValueError, NetError) as exc:
            raise LfsError(reason(exc)) from None
        self._count(got)
        return bytes(buf)

    def _count(self, n: int) -> None:
        self.fetched_bytes += n


def _is_resolve(url: str) -> bool:
    return "/resolve/" in urlsplit(url).path


# ---- partial reads of large objects --------------------------------------------------------------------


class RangeFile(io.RawIOBase):
    """A seekable read-only view of a remote object through range requests in 64 KiB blocks, at
    most `limit` bytes fetched (zipfile reads its directory and members through it)."""

    BLOCK = 64 << 10

    def __init__(self, client: LfsClient, oid: str, size: int, limit: int) -> None:
        self.client, self.oid, self.size, self.limit = client, oid, size, limit
        self.pos, self.fetched, self.blocks = 0, 0, {}

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        self.pos = {0: 0, 1: self.pos, 2: self.size}[whence] + offset
        return self.pos

    def tell(self) -> int:
        return self.pos

    def readinto(self, b) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    def read(self, n: int = -1) -> bytes:
        end = self.size if n is None or n < 0 else min(self.size, self.pos + n)
        out = bytearray()
        while self.pos < end:
            i = self.pos // self.BLOCK
            block = self.blocks.get(i)
            if block is None:
                start = i * self.BLOCK
                stop = min(self.size, start + self.BLOCK) - 1
                self.fetched += stop - start + 1
                if self.fetched > self.limit:
                    raise LfsError(f"reading its directory and small members needs more than {self.limit >> 20} MiB")
                block = self.blocks[i] = self.client.range(self.oid, start, stop)
            piece = block[self.pos - i * self.BLOCK : end - i * self.BLOCK]
            if not piece:
                break
            out += piece
            self.pos += len(piece)
        return bytes(out)


def zip_members(client: LfsClient, oid: str, size: int, member_cap: int) -> bytes:
    """A zip holding the large zip's members that can hold a secret (not tensor storages, each
    at most `member_cap`), read through range requests: a 5 GB checkpoint costs its directory
    and its pickle."""
    src = RangeFile(client, oid, size, ZIP_READ_LIMIT)
    out = io.BytesIO()
    try:
        with zipfile.ZipFile(src) as z, zipfile.ZipFile(out, "w") as w:
            for info in z.infolist():
                if info.is_dir() or _TENSOR_MEMBER.search(info.filename) or info.file_size > member_cap:
                    continue
                with z.open(info) as fh:
                    data = fh.read(member_cap + 1)
                if len(data) <= member_cap:
                    w.writestr(info.filename, data)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError, ValueError, EOFError) as exc:
        raise LfsError(f"not a readable zip: {reason(exc)}") from None
    return out.getvalue()


def safetensors_header(client: LfsClient, oid: str, size: int) -> bytes:
    """The 8-byte length and the JSON header (where `__metadata__` lives), nothing else."""
    if size < 8:
        raise LfsError("too short for safetensors")
    n = int.from_bytes(client.range(oid, 0, 7), "little")
    if n > HEADER_LIMIT or n > size - 8:
        raise LfsError(f"safetensors header of {n} bytes (limit {HEADER_LIMIT >> 20} MiB)")
    return client.range(oid, 0, 7 + n) if n else b""


def gguf_prefix(client: LfsClient, oid: str, size: int) -> bytes:
    """The file's start, long enough to hold its metadata (doubling up to HEADER_LIMIT)."""
    from ..decoders import Limits
    from ..decoders.base import Context, Problem
    from ..decoders.gguf import gguf_metadata

    want = 256 << 10
    while True:
        data = client.range(oid, 0, min(size, want) - 1)
        truncated = any(isinstance(i, Problem) and "truncated" in i.reason
                        for i in gguf_metadata(data, "", Context(Limits())))  # fmt: skip
        if not truncated or want >= min(size, HEADER_LIMIT):
            return data
        want *= 4


# ---- the source ------------------------------------------------------------------------------------


@dataclass
class Pointer:
    oid: str
    size: int
    pointers: set[str] = field(default_factory=set)  # the git blobs naming it
    places: list[Place] = field(default_factory=list)


def read_pointers(git, candidates: dict[str, tuple[Place, ...]], sizes: dict[str, int]) -> dict[str, Pointer]:
    """The LFS objects that the small blobs among `candidates` (git oid → places) point at."""
    from .git import GitBlob, GitWarning

    small = [GitBlob(oid, places[0].path if places else "", sizes[oid]) for oid, places in candidates.items()
             if 0 < sizes.get(oid, 0) <= MAX_POINTER]  # fmt: skip
    found: dict[str, Pointer] = {}
    if not small:
        return found
    for item in git.read_blobs(small):
        if isinstance(item, GitWarning):
            continue
        blob, read = item
        data = read(MAX_POINTER + 1)
        oid = lfs_oid(data)
        m = _SIZE.search(data.replace(b"\r\n", b"\n"))
        if oid is None or m is None:
            continue
        ptr = found.setdefault(oid, Pointer(oid, int(m.group(1))))
        ptr.pointers.add(blob.oid)
        ptr.places += [Place(p.path, p.source, p.commit, "lfs", p.author, p.date) for p in candidates[blob.oid]]
    return found


class LfsSource(Source):
    """The LFS objects the pointers of a repository's walked history name (see the module)."""

    def __init__(self, blobs, client: LfsClient, options: LfsOptions) -> None:
        self.blobs, self.client, self.options = blobs, client, options
        self.opener = None  # fetched and read in the driver: one download per oid, one budget
        self._pointers: dict[str, Pointer] = {}
        self._plans: dict[str, str] = {}
        self._by_key: dict[str, Pointer] = {}
        self.fetched_objects = 0  # objects that cost a download (whole or in part) this scan

    def listing(self) -> Iterator[Blob | Skip]:
        self._pointers = self.pointers()
        passed = [0, 0]
        for ptr in self._pointers.values():
            how = self.plan(ptr)
            if how is None:
                passed[0] += 1
                passed[1] += ptr.size
                continue
            key = ptr.oid if how == "whole" else part_key(ptr.oid)
            self._plans[key] = how
            self._by_key[key] = ptr
            places = tuple(sorted(ptr.places, key=Place.age))
            yield Blob(key, ptr.size, places, ptr)
        if passed[0]:
            yield Skip(f"({self.label})", f"{passed[0]} {self.noun} ({passed[1] >> 20} MiB) not fetched: kinds "
                       f"that hold no text (weights, arrays) or over --max-lfs-mb ({self.options.max_object_bytes >> 20} MiB)")  # fmt: skip

    label, noun = "lfs", "LFS objects"  # the skip's path and what it counts

    def pointers(self) -> dict[str, Pointer]:
        """The objects to consider, by id, with every place that names them."""
        history = self.blobs
        git, plan = history.repo, history.plan
        if plan.previous is not None:
            # an incremental walk lists only new blobs; objects with findings must be reported
            # again, so every pointer of the whole history is listed (the scan cache skips the
            # clean ones without fetching anything)
            try:
                intro = git.introductions()
            except Exception:
                intro = {}
            candidates = {oid: tuple(Place(a.path, "history", a.commit, None, a.author, a.date) for a in atts)
                          for oid, atts in intro.items()}  # fmt: skip
            sizes = git.sizes(list(candidates))
        else:
            candidates, sizes = dict(history._places), history.sizes
        return read_pointers(git, candidates, sizes)

    def plan(self, ptr: Pointer) -> str | None:
        """whole | part | None (not fetched), by size and the kind the pointer's paths say."""
        exts = {_kind(p.path) for p in ptr.places}
        if ptr.size <= SMALL_OBJECT:
            return "whole"
        if exts & {"safetensors", "gguf"}:
            return "part"  # headers only, at any size
        if exts & _PARTIAL_EXT:
            return "part"  # a zip's directory (sniffed first), or whole if it is a pickle within the cap
        if exts & _WHOLE_EXT and ptr.size <= self.options.max_object_bytes:
            return "whole"
        return None

    def read(self, blobs: Sequence[Blob]) -> Iterator[Opened | Skip]:
        client, spent = self.client, 0
        budget = self.options.repo_budget
        todo = [b for b in blobs if self._cached(b) is None]
        fallbacks = {b.ref.oid: url for b in todo if (url := self._resolve_url(b)) is not None}
        errors = client.locate([(b.ref.oid, b.ref.size) for b in todo], fallbacks) if todo else {}
        for blob in blobs:
            ptr: Pointer = blob.ref
            where = blob.places[0]
            before = client.fetched_bytes
            try:
                if ptr.oid in errors and self._cached(blob) is None:
                    raise LfsError(errors[ptr.oid])
                path = self._fetch(blob, ptr, budget - spent)
                size = path.stat().st_size  # a partial read: what was read, not the object's size
                fh = open(path, "rb", buffering=0)  # noqa: SIM115 - closed when read to the end
            except (LfsError, OSError) as exc:
                yield Skip(where.path, f"LFS object not fetched: {reason(exc)}", "lfs")
                continue
            finally:
                spent += client.fetched_bytes - before
                self.fetched_objects += client.fetched_bytes > before
                self._progress()
            yield replace(blob, size=size), _closing_reader(fh)
        if self.options.progress and self.fetched_objects:
            print(file=sys.stderr)

    def _resolve_url(self, blob: Blob) -> str | None:
        """Where the file is read when the batch API does not give it: `/resolve/` at the
        commit that introduced it."""
        place = blob.places[0]
        return f"{self.client.repo_url}/resolve/{place.commit}/{quote(place.path)}" if place.commit else None

    def _cached(self, blob: Blob) -> Path | None:
        """What the cache holds for a blob: the object, or what a partial read of it gave."""
        return self.client.cache.get(blob.ref.oid) or self.client.cache.get(blob.key)

    def _fetch(self, blob: Blob, ptr: Pointer, left: int) -> Path:
        cache = self.client.cache
        if (hit := self._cached(blob)) is not None:
            return hit
        if self._plans[blob.key] == "whole":
            if ptr.size > left:
                raise LfsError(f"over the repository's LFS budget ({self.options.repo_budget >> 20} MiB)")
            return self.client.download(ptr.oid, ptr.size)
        if left <= 0:
            raise LfsError(f"over the repository's LFS budget ({self.options.repo_budget >> 20} MiB)")
        exts = {_kind(p.path) for p in ptr.places}
        if "safetensors" in exts:
            kind = "safetensors"
        elif "gguf" in exts:
            kind = "gguf"
        else:
            from ..decoders import sniff

            kind = sniff(self.client.range(ptr.oid, 0, min(ptr.size, SNIFF) - 1), "")
        if kind == "gguf":
            data = gguf_prefix(self.client, ptr.oid, ptr.size)
        elif kind == "safetensors":
            data = safetensors_header(self.client, ptr.oid, ptr.size)
        elif kind == "zip":
            data = zip_members(self.client, ptr.oid, ptr.size, min(self.options.max_object_bytes, left))
        elif kind == "pickle" and ptr.size <= min(PICKLE_PREFIX, left):
            return self.client.download(ptr.oid, ptr.size)
        elif kind == "pickle":
            # torch's legacy format: the pickle with every string first, tensor storages after
            data = self.client.range(ptr.oid, 0, PICKLE_PREFIX - 1)
        else:
            raise LfsError("large binary of a kind that holds no text (not a zip, pickle, safetensors or GGUF)")
        return cache.put(blob.key, lambda fh: fh.write(data))

    def _progress(self) -> None:
        if self.options.progress and self.fetched_objects:
            print(f"\rLFS: {self.fetched_objects} objects, {self.client.fetched_bytes / (1 << 20):.1f} MiB fetched",
                  end="", file=sys.stderr, flush=True)  # fmt: skip

    def finish(self, findings: list[Finding], scanned: list[tuple[str, int]]) -> list[Finding]:
        from .history import _oldest

        self.client.close()
        head = self.blobs.repo.head_blobs()
        in_head = {key for key, ptr in self._by_key.items() if ptr.pointers & head}
        secrets = {f.secret_sha256 for f in findings if f.blob in in_head}
        for f in findings:
            f.in_head = f.secret_sha256 in secrets
        return _oldest(findings, key=lambda f: f.fingerprint)


def part_key(oid: str) -> str:
    """The id of what a partial read of `oid` gave (a header, a zip's small members): hex like
    every scan-cache key, and never the whole object's."""
    return hashlib.sha256(f"lfs-part\0{oid}".encode()).hexdigest()


def _closing_reader(fh):
    def read(n: int) -> bytes:
        data = fh.read(n)
        if not data:
            fh.close()
        return data

    return read


def _kind(path: str) -> str:
    name = path.rsplit("/", 1)[-1].lower()
    if "tfevents" in name:
        return "tfevents"  # TensorBoard logs: text summaries and hparams
    return name.rsplit(".", 1)[-1] if "." in name else ""


def lfs_source(history, hub_repo, options: LfsOptions) -> LfsSource:
    from .hubapi import hub_token

    client = LfsClient(hub_repo.web_url, hub_repo.endpoint, hub_token(), ContentCache.default())
    return LfsSource(history, client, options)
