"""The source contract: what every source of content gives the pipeline.

A `Source` lists `Blob`s — content to read and match once — each with every `Place` it appears
at (a file path; every path and commit that put a git blob there; a comment), then reads them.
The pipeline (`leakscan.pipeline`) does the rest the same way for every source: decoders,
matcher, findings per place, verification, revocation, report and store. A new surface is a new
source, not a new flow.

Reading is split from listing so the pipeline can shard a listing over worker processes: a
source's `opener` is a small picklable callable that a forked worker calls with its shard.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ..model import Finding, Place, Skip, pickled_by_fields

Read = Callable[[int], bytes]  # read(n): n bytes unless fewer are left, b"" at the end


@dataclass(frozen=True, slots=True)
class Blob:
    """Content to read and match once, and every place it appears at (oldest first)."""

    key: str | None  # a content id the scan cache can remember (a git object id); None: not cached
    size: int
    places: tuple[Place, ...]
    ref: Any = None  # what the opener needs to read it (a file's absolute path, a git object id, bytes)
    #: the key of this file's earlier version (the blob its commit's parent held at the same
    #: path); if scanned earlier in the same pass, only what changed since is searched (`versions`)
    base: str | None = None

    __reduce__ = pickled_by_fields


Opened = tuple[Blob, Read]
Opener = Callable[[Sequence[Blob]], Iterator["Opened | Skip"]]


class Source:
    """Lists blobs with their places and reads them; `finish` adds what only the whole result
    can tell (attribution, whether the tip still holds a secret, links)."""

    #: a picklable callable reading blobs in a worker process; None: read in the driver only
    opener: Opener | None = None
    #: git objects (counted as such in the stats), and whether only new history was walked
    history = False
    incremental = False
    #: where fetched git-lfs content lives, scanned in place of the pointers naming it
    lfs_store = None
    #: the listing needs nothing of the sources before it (nor the store's connection, which
    #: stays in its thread): the pipeline lists it alongside theirs
    independent_listing = False

    def listing(self) -> Iterator[Blob | Skip]:
        raise NotImplementedError

    def read(self, blobs: Sequence[Blob]) -> Iterator[Opened | Skip]:
        if self.opener is None:
            raise NotImplementedError
        return self.opener(blobs)

    def finish(self, findings: list[Finding], scanned: list[tuple[str, int]]) -> list[Finding]:
        """Annotate (and possibly reduce) this source's findings; `scanned` lists the (key,
        findings) of every keyed blob read. The default keeps them as they are."""
        return findings


def bytes_opener(blobs: Sequence[Blob]) -> Iterator[Opened | Skip]:
    """For sources whose blobs carry their bytes in `ref` (comments, stdin)."""
    from ..matcher import bytes_reader

    for blob in blobs:
        yield blob, bytes_reader(blob.ref)


class Annotated(Source):
    """Another source whose findings get something more once finished (a Hub repository's name
    and links)."""

    def __init__(self, inner: Source, annotate: Callable[[list[Finding]], None]) -> None:
        self.inner, self.annotate = inner, annotate
        self.opener, self.history, self.lfs_store = inner.opener, inner.history, inner.lfs_store
        self.incremental = inner.incremental
        self.independent_listing = inner.independent_listing

    def listing(self) -> Iterator[Blob | Skip]:
        yield from self.inner.listing()
        self.incremental = self.inner.incremental

    def read(self, blobs: Sequence[Blob]) -> Iterator[Opened | Skip]:
        return self.inner.read(blobs)

    def finish(self, findings: list[Finding], scanned: list[tuple[str, int]]) -> list[Finding]:
        findings = self.inner.finish(findings, scanned)
        self.annotate(findings)
        return findings
