"""Turn the matcher's byte offsets into lines and columns, streaming alongside it.

Kept apart from the matcher (which stays bytes → candidates) and from sources (which know
nothing of matches): this is the one place that reads the surrounding line, for the position
and for the inline `leakscan:allow` marker.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable, Iterator, Sequence

from .matcher import CHUNK_SIZE, Matcher, bytes_reader
from .model import Candidate, Location

ALLOW_MARKER = b"leakscan:allow"
_MAX_LINE_PEEK = 4096  # how far around a match we look for the marker on its line


def locate_stream(matcher: Matcher, read: Callable[[int], bytes], chunk_size: int | None = None) -> Iterator[tuple[Candidate, Location]]:
    """Scan a stream and yield each candidate with its 1-based line and column."""
    lines = LineCounter()
    kwargs = {"chunk_size": chunk_size} if chunk_size else {}
    for data, offset, cands in matcher.scan_stream(read, **kwargs):
        yield from lines.locate(data, offset, cands)


class LineCounter:
    """Lines of a stream seen chunk by chunk (chunks overlapping, in order), for locating the
    candidates of each chunk."""

    def __init__(self) -> None:
        self.lines_before = 0  # newlines in the stream before the current chunk
        self.last_newline = -1  # absolute offset of the last newline before the current chunk
        self.prev: tuple[bytes, int] | None = None

    def locate(self, data: bytes, offset: int, cands: list[Candidate]) -> Iterator[tuple[Candidate, Location]]:
        if self.prev is not None:
            pdata, poff = self.prev
            advance = offset - poff
            self.lines_before += pdata.count(b"\n", 0, advance)
            nl = pdata.rfind(b"\n", 0, advance)
            if nl >= 0:
                self.last_newline = poff + nl
        self.prev = (data, offset)
        return _locate(data, offset, cands, self.lines_before, self.last_newline)


def _locate(data: bytes, offset: int, cands: list[Candidate], lines_before: int,
            last_newline: int) -> Iterator[tuple[Candidate, Location]]:  # fmt: skip
    # One pass over the chunk whatever the candidates: lines are counted, the current line's
    # start followed and its characters decoded incrementally from one candidate to the next.
    # Looking back from each candidate instead cost a file of 85,000 tokens on one line minutes.
    counted, line, nl = 0, lines_before + 1, -1  # nl: the chunk's last newline before `counted`
    column = _Columns(data)
    marked = ALLOW_MARKER in data
    for cand in sorted(cands, key=lambda c: c.start):
        rel = cand.start - offset
        line += data.count(b"\n", counted, rel)
        nl = max(nl, data.rfind(b"\n", counted, rel))
        counted = rel
        if nl >= 0:
            col = column.at(nl + 1, rel) + 1
        elif last_newline + 1 >= offset:
            col = column.at(last_newline + 1 - offset, rel) + 1
        else:  # the line began in an earlier chunk; count bytes
            col = cand.start - last_newline
        allowed = marked and _allowed(data, rel, cand.end - offset)
        yield cand, Location(line, col, cand.start, allowed)


class _Columns:
    """Characters from a line's start to a position (invalid UTF-8 counted as U+FFFD, as in a
    whole decode), decoded incrementally while positions move along the same line."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.line_start = -1
        self.pos = 0
        self.chars = 0
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def at(self, line_start: int, pos: int) -> int:
        if line_start != self.line_start or pos < self.pos:
            self.line_start, self.pos, self.chars = line_start, line_start, 0
            self.decoder.reset()
        self.chars += len(self.decoder.decode(self.data[self.pos : pos]))
        self.pos = pos
        # bytes of an unfinished character at `pos` count as a whole decode would count them
        state = self.decoder.getstate()
        tail = len(self.decoder.decode(b"", final=True))
        self.decoder.setstate(state)
        return self.chars + tail


def _allowed(data: bytes, start: int, end: int) -> bool:
    """The marker may sit on the first or the last line of the match (a PEM block spans many)."""
    lo = max(0, data.rfind(b"\n", max(0, start - _MAX_LINE_PEEK), start) + 1)
    hi = data.find(b"\n", start, start + _MAX_LINE_PEEK)
    if ALLOW_MARKER in data[lo : hi if hi >= 0 else start + _MAX_LINE_PEEK]:
        return True
    if end - start > 1 and b"\n" in data[start:end]:
        lo = data.rfind(b"\n", start, end) + 1
        hi = data.find(b"\n", end, end + _MAX_LINE_PEEK)
        return ALLOW_MARKER in data[lo : hi if hi >= 0 else end + _MAX_LINE_PEEK]
    return False


def locate_bytes(matcher: Matcher, data: bytes, changed: Sequence[tuple[int, int]] | None = None) -> list[tuple[Candidate, Location]]:
    """`locate_stream` for bytes in memory; one matcher call when they fit in a chunk (most
    blobs), which spares the streaming machinery its per-blob cost. `changed`: see
    `Matcher.scan` (bytes that fit in a chunk only)."""
    if len(data) > CHUNK_SIZE:
        return list(locate_stream(matcher, bytes_reader(data)))
    cands = matcher.scan(data, changed=changed)
    return list(_locate(data, 0, cands, 0, -1)) if cands else []
