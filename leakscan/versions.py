"""Earlier versions of a file in one history pass: what changed since, and the order to read in.

A file edited 500 times is 500 blobs that differ in a few lines each. Decoding every one whole
(the encoded-text search over every line, again and again) was most of a history scan's cost.
A blob whose earlier version (the blob its commit's parent held at the same path) was scanned
earlier in the same pass has its encoded text searched only between the two versions' common
start and common end, widened to whitespace or a quote: encoded runs never cross those, so every
run outside was in that version too, at the same path, and what it decodes to was found there.
Raw matches are searched for and confirmed only where they can reach that span (each rule's
width around it, see `Matcher.scan`): any other match is one the earlier version holds, with
the same bytes around it.

A secret is then reported where it first appeared, as the history report wants; what changes is
that the copies of an encoded secret in later versions (named by their own byte offsets, so
reported apart before) are no longer repeated.

For the earlier version to be at hand, blobs are read file by file, oldest first (which is also
the order git packs deltas in), in pieces of at most PIECE_BYTES. Each piece starts afresh, so
what a blob is compared with never depends on how the pieces were shared out among workers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .sources.base import Blob

PIECE_BYTES = 64 << 20  # a file's history longer than this is read in pieces that can run in parallel
KEPT_BYTES = 64 << 20  # earlier versions kept at hand, per piece being scanned
KEPT_VERSIONS = 64


@dataclass(frozen=True, slots=True)
class Version:
    """A text blob as scanned: its bytes, and the secrets its decoded layers showed (with those
    of the versions before it): a raw secret a layer shows is reported in the layer only,
    whichever version's layer it was."""

    data: bytes
    shown: frozenset[tuple[str, str]] = frozenset()  # (detector, secret)


class Versions:
    """The blobs of the current piece scanned so far (the latest KEPT_VERSIONS, KEPT_BYTES)."""

    def __init__(self) -> None:
        self._kept: dict[str, tuple[Version, frozenset[str]]] = {}  # by blob key, with the paths it was scanned at
        self._bytes = 0

    def before(self, blob: Blob) -> Version | None:
        """The earlier version `blob` may be compared with: its base, if scanned in this piece at
        every path `blob` is at (a rule that excludes one path must not hide a secret another
        path shows)."""
        if blob.base is None:
            self.clear()  # a new piece
            return None
        kept = self._kept.get(blob.base)
        if kept is None or not {p.path for p in blob.places} <= kept[1]:
            return None
        return kept[0]

    def keep(self, blob: Blob, version: Version | None) -> None:
        if version is None or blob.key is None or blob.key in self._kept:
            return
        self._kept[blob.key] = (version, frozenset(p.path for p in blob.places))
        self._bytes += len(version.data)
        while len(self._kept) > KEPT_VERSIONS or self._bytes > KEPT_BYTES:
            oldest = next(iter(self._kept))
            self._bytes -= len(self._kept.pop(oldest)[0].data)

    def clear(self) -> None:
        self._kept.clear()
        self._bytes = 0


def file_order(blobs: Sequence[Blob]) -> list[Blob]:
    """`blobs` file by file (by the path each first appeared at), oldest first, in pieces of at
    most PIECE_BYTES; the first blob of every piece loses its base, which marks where a piece
    starts. Blobs without any base (not a history) keep their order."""
    if not any(b.base for b in blobs):
        return list(blobs)
    files: dict[str, list[Blob]] = {}
    for blob in blobs:
        files.setdefault(blob.places[0].path if blob.places else "", []).append(blob)
    ordered: list[Blob] = []
    for path in sorted(files):
        piece = PIECE_BYTES  # the first blob of a file always starts a piece
        for blob in sorted(files[path], key=lambda b: b.places[0].age() if b.places else ()):
            if piece + blob.size > PIECE_BYTES:
                piece = 0
                if blob.base is not None:
                    blob = dataclasses.replace(blob, base=None)
            piece += blob.size
            ordered.append(blob)
    return ordered


# Every encoded run (base64, hex, percent, \\u) ends at whitespace or a quote, and so does the
# word a percent or \\u span is widened over: text cut at these is cut between runs.
_CUTS = (b"\n", b" ", b'"', b"'", b"\t", b"\r")


def changed_span(old: bytes, new: bytes) -> tuple[int, int]:
    """[lo, hi) of `new`, cut at whitespace or quotes, outside which `new` is the common start or
    common end of the two versions: what lies there was in `old` between the same cuts (in a
    JSON file of one long line too)."""
    n = min(len(old), len(new))
    p = _common_prefix(old, new, n)
    s = _common_suffix(old, new, n - p)
    lo = max(new.rfind(c, 0, p) for c in _CUTS) + 1
    c = max(p, len(new) - s)
    cuts = [i for i in (new.find(c_, c) for c_ in _CUTS) if i >= 0]
    return lo, min(cuts) + 1 if cuts else len(new)


def _common_prefix(a: bytes, b: bytes, n: int) -> int:
    """Length of the common start of a[:n] and b[:n]."""
    return _agreeing(n, lambda i, j: a[i:j] == b[i:j])


def _common_suffix(a: bytes, b: bytes, n: int) -> int:
    """Length of the common end of `a` and `b`, at most n."""
    la, lb = len(a), len(b)
    return _agreeing(n, lambda i, j: a[la - j : la - i] == b[lb - j : lb - i])


def _agreeing(n: int, same: Callable[[int, int], bool]) -> int:
    """The largest k <= n such that positions [0, k) agree, `same(i, j)` telling whether [i, j)
    do: compared a block at a time (C speed), the block that differs narrowed down by halves."""
    i, step = 0, 4096
    while i < n:
        j = min(n, i + step)
        if not same(i, j):
            while j - i > 1:  # [0, i) agree, [i, j) do not
                mid = (i + j) // 2
                if same(i, mid):
                    i = mid
                else:
                    j = mid
            return i
        i, step = j, min(step * 2, 1 << 20)
    return n
