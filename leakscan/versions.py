"""Earlier versions of a file in one history pass: what changed since, and the order to read in.

A file edited 500 times is 500 blobs that differ in a few lines each. Decoding every one whole
(the encoded-text search over every line, again and again) was most of a history scan's cost.
A blob whose earlier version (the blob its commit's parent held at the same path) was scanned
earlier in the same pass has its encoded text searched only in the spans where the two differ
(`changed_spans`), widened to whitespace or a quote: encoded runs never cross those, so every
run outside was in that version too, at the same path, and what it decodes to was found there.
Raw matches are searched for and confirmed only where they can reach a span (each rule's width
around it, see `Matcher.scan`): any other match is one the earlier version holds, with the same
bytes around it.

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

from .kept import Kept
from .lazyre import lazy_regex
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
        # by blob key, with the paths it was scanned at
        self._kept: Kept[str, tuple[Version, frozenset[str]]] = Kept(KEPT_BYTES, KEPT_VERSIONS)

    def before(self, blob: Blob) -> Version | None:
        """The earlier version `blob` may be compared with: its base, if scanned in this piece at
        every path `blob` is at (a rule that excludes one path must not hide a secret another
        path shows)."""
        if blob.base is None:
            self._kept.clear()  # a new piece
            return None
        kept = self._kept.get(blob.base)
        if kept is None or not {p.path for p in blob.places} <= kept[1]:
            return None
        return kept[0]

    def keep(self, blob: Blob, version: Version | None) -> None:
        if version is not None and blob.key is not None:
            self._kept.put(blob.key, (version, frozenset(p.path for p in blob.places)), len(version.data))


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
_CUT = lazy_regex(rb"[\n \"'\t\r]")
_CUT_BEFORE = lazy_regex(rb"(?r)[\n \"'\t\r]")
MAX_SPANS = 64  # past this many, what is left of the two versions is compared as one span
_ANCHOR = 48  # bytes of the new version looked for in the old one to align what lies around them
_SMALL = 2048  # a difference shorter than this is not split further


def changed_spans(old: bytes, new: bytes) -> tuple[tuple[int, int], ...]:
    """The spans [lo, hi) of `new` (sorted, apart), each cut at whitespace or quotes, outside
    which `new` is made of runs of `old`: every gap between two spans (and before the first,
    after the last) is a run of bytes that `old` holds too, beginning after the same cut and
    ending with one, so what lies inside it, encoded runs and lookaround alike, was in `old`.

    The two versions are aligned by their common start and end, then, in what differs, around
    a piece of the new version found in the old one, recursively (an entry added to a table of
    contents at the top of a README and to its body further down are two small spans, not the
    whole text between them). Any alignment is correct, because only runs the two share are
    left out; a better one leaves out more."""
    raw: list[tuple[int, int]] = []
    _align(old, 0, len(old), new, 0, len(new), raw)
    spans: list[tuple[int, int]] = []
    for a, b in raw:
        before = _CUT_BEFORE.search(new, 0, a)
        after = _CUT.search(new, b)
        lo = before.start() + 1 if before else 0
        hi = after.start() + 1 if after else len(new)
        if spans and lo <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(hi, spans[-1][1]))
        else:
            spans.append((lo, hi))
    return tuple(spans)


def _align(old: bytes, o0: int, o1: int, new: bytes, n0: int, n1: int, out: list[tuple[int, int]]) -> None:
    """Append to `out` the parts of new[n0:n1] that differ from old[o0:o1] (a part of length 0:
    bytes deleted there)."""
    p = _common_prefix(old, o0, new, n0, min(o1 - o0, n1 - n0))
    o0, n0 = o0 + p, n0 + p
    s = _common_suffix(old, o1, new, n1, min(o1 - o0, n1 - n0))
    o1, n1 = o1 - s, n1 - s
    if o0 == o1 and n0 == n1:
        return
    if n1 - n0 < _SMALL or o1 - o0 < _ANCHOR or len(out) >= MAX_SPANS:
        out.append((n0, n1))
        return
    for at in (n0 + (n1 - n0) // 2, n0 + (n1 - n0) // 4, n0 + 3 * (n1 - n0) // 4):
        at = min(at, n1 - _ANCHOR)
        found = old.find(new[at : at + _ANCHOR], o0, o1)
        if found >= 0:
            _align(old, o0, found, new, n0, at, out)
            _align(old, found + _ANCHOR, o1, new, at + _ANCHOR, n1, out)
            return
    out.append((n0, n1))


def _common_prefix(a: bytes, i: int, b: bytes, j: int, n: int) -> int:
    """Length of the common start of a[i:i+n] and b[j:j+n]."""
    return _agreeing(n, lambda x, y: a[i + x : i + y] == b[j + x : j + y])


def _common_suffix(a: bytes, i: int, b: bytes, j: int, n: int) -> int:
    """Length of the common end of a[:i] and b[:j], at most n."""
    return _agreeing(n, lambda x, y: a[i - y : i - x] == b[j - y : j - x])


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
        i, step = j, min(step * 2, 1 << 16)  # blocks beyond 64 KiB compare slower (fresh memory)
    return n
