"""Encoded text in a text layer too long to hold whole, decoded as it streams past.

A text blob over the whole-blob size is scanned in overlapping chunks (matcher.ChunkFeed).
`EncodedStream` is shown the same chunks, as windows, and decodes in each what `find_encoded`
would decode in a whole blob, so that size is no hiding place:
  * base64/hex runs that start in the part of the window the window owns (the matcher's
    ownership: every offset is owned by one window) and end inside it, and percent/\\u spans
    that start there, are decoded as in a whole blob, their layers expanded in turn, and named by
    their offset in the stream (`base64@<offset>`);
  * the run that reaches the end of a window (so at least 16 KiB long) is decoded as a stream
    from its start, in steps aligned to its encoding, into a nested stream that is scanned the
    same way: one layer `base64@<offset of the run>`, its lines counted within it;
  * a stream whose first window is UTF-16 is decoded whole, by an incremental decoder (a
    character split between windows is decoded once, whole), into a nested stream `utf16`.
Each window is decoded within its own `Limits` (decoded bytes, time), as a blob of its size
would be. Decoding text never grows it, so the work of a stream grows with its length as the
raw scan's does, and is bounded per window; a budget for the whole stream would only let a
longer blob hide its tail. Not decoded: a structured format (gzip, zip…) that a long run or a
UTF-16 stream turns out to hold (reported as skipped), and the part past the end of its window
of a percent/\\u span longer than the windows' overlap (16 KiB).
"""

from __future__ import annotations

import codecs
from collections.abc import Callable, Iterator
from typing import Protocol

from ..model import Skip
from . import HANDLERS, _run, sniff
from .base import Context, Layer, LimitReached, Limits, human
from .encoded import RunDecoder, decoded_ok, long_run_kind, run_end, utf16_encoding, window_encoded


class Sink(Protocol):
    """Where a decoded stream goes: a nested stream scanner."""

    def feed(self, data: bytes) -> None: ...

    def close(self) -> None: ...


class EncodedStream:
    """The encoded text of one stream (the blob, or a layer decoded as a stream), window by
    window. `nested(name)` opens the stream a long run or UTF-16 text decodes into."""

    def __init__(self, path: str, enc: int, limits: Limits, nested: Callable[[str], Sink]) -> None:
        self.path = path
        self.enc = enc
        self.limits = limits
        self.nested = nested
        self.active = enc < limits.max_encoded_depth
        self.started = False
        self.sink: Sink | None = None  # the nested stream a long run or UTF-16 text goes to
        self.decoder: RunDecoder | None = None  # a long run's, while it lasts
        self.utf16 = None  # the incremental decoder of a UTF-16 stream
        self.upto = 0  # stream offset up to which the long run or UTF-16 text has been decoded
        self.spans_done: dict[str, int] = {}  # where the last percent/\u span decoded ends

    def window(self, data: bytes, offset: int, own: tuple[int, int], final: bool) -> Iterator[Layer | Skip]:
        """Layers and skips of one window (the matcher's chunk at `offset`, owning match starts
        in data[own[0]:own[1]]); a long run goes to its nested stream meanwhile."""
        if not self.active:
            return
        try:
            yield from self._window(data, offset, own, final, Context(self.limits))
        except LimitReached as exc:
            # what was decoded of a long run or UTF-16 text ends here: what follows the gap
            # must not be read as if it came next
            self._end_run()
            if self.utf16 is not None:
                self._close_utf16()
                self.active = False
            yield Skip(self.path, exc.reason, exc.where or None)
        except Exception as exc:  # a decoder bug must not end the scan, nor hide the raw bytes
            self._end_run()
            self._close_utf16()
            self.active = False
            yield Skip(self.path, f"encoded-text stream decoder failed: {type(exc).__name__}: {exc}"[:500])
        if final:
            self._end_run()
            self._close_utf16()

    def _window(self, data: bytes, offset: int, own: tuple[int, int], final: bool, ctx: Context) -> Iterator[Layer | Skip]:
        if not self.started:
            self.started = True
            yield from self._start(data)
            if not self.active:
                return
        if self.utf16 is not None:
            self._utf16(data, offset, final, ctx)
            return
        skip_until = self._continue_run(data, offset, final, ctx)
        items, long_run = window_encoded(data, offset, own, final, skip_until, self.spans_done)
        yield from _run(ctx, self.path, items, "encoded-text", "", 0, self.enc)
        if long_run is not None:
            self._open_run(data, offset, long_run, ctx)

    # -- the first window: a format, UTF-16, or text ------------------------------------------

    def _start(self, data: bytes) -> Iterator[Skip]:
        fmt = sniff(data) if self.enc else None  # the blob itself was sniffed by the scanner
        if fmt in HANDLERS or fmt == "lfs":
            self.active = False
            yield Skip(self.path, f"too large to decode: {fmt} data in encoded text over {human(len(data))}; scanned as raw bytes")
            return
        enc = utf16_encoding(data)
        if enc:
            self.utf16 = codecs.getincrementaldecoder(enc)("replace")
            self.upto = 2 if data[:2] in (b"\xff\xfe", b"\xfe\xff") else 0  # the BOM is no text
            self.sink = self.nested("utf16")

    def _utf16(self, data: bytes, offset: int, final: bool, ctx: Context) -> None:
        new = data[self.upto - offset :]
        if final and len(new) % 2:  # an odd last byte is no character, as for a whole blob
            new = new[:-1]
        self.upto = offset + len(data)
        out = self.utf16.decode(new, final).encode("utf-8", "backslashreplace")
        ctx.spend(len(out))
        self.sink.feed(out)

    def _close_utf16(self) -> None:
        if self.utf16 is not None and self.sink is not None:
            sink, self.sink = self.sink, None
            sink.close()

    # -- a run longer than a window -------------------------------------------------------------

    def _open_run(self, data: bytes, offset: int, run: tuple[int, int], ctx: Context) -> None:
        start, end = run
        kind = long_run_kind(data[start:end])
        if kind is None:
            return
        decoder = RunDecoder(kind)
        first = decoder.feed(data[start:end])
        if not decoded_ok(first):
            return
        self.decoder = decoder
        self.upto = offset + end
        self.sink = self.nested(f"{'hex' if kind == 'hex' else 'base64'}@{offset + start}")
        ctx.spend(len(first))
        self.sink.feed(first)

    def _continue_run(self, data: bytes, offset: int, final: bool, ctx: Context) -> int:
        """Feeds the long run's next part, if one is under way; returns where it ends in `data`
        (runs found before that are parts of it)."""
        if self.decoder is None:
            return 0
        ctx.tick()
        begin = self.upto - offset
        end = run_end(data, begin)
        out = self.decoder.feed(data[begin:end])
        self.upto = offset + end
        ctx.spend(len(out))
        self.sink.feed(out)
        if end < len(data) or final or self.decoder.ended:
            self._end_run()
        return end

    def _end_run(self) -> None:
        if self.decoder is None:
            return
        decoder, sink = self.decoder, self.sink
        self.decoder = self.sink = None
        sink.feed(decoder.close())
        sink.close()
