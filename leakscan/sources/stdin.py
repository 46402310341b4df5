"""Source: standard input (`leakscan scan -`), streamed: never held whole, path `<stdin>`."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from typing import BinaryIO

from ..matcher import file_reader
from ..model import Place, Skip
from .base import Blob, Opened, Source

STDIN_PATH = "<stdin>"


class StdinSource(Source):
    """One blob: whatever arrives until end of input. Read in this process (a stream cannot be
    handed to a worker); `max_bytes` stops reading there and reports the rest as skipped."""

    def __init__(self, stream: BinaryIO | None = None, max_bytes: int | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdin.buffer
        self.max_bytes = max_bytes
        self.read_bytes = 0

    def listing(self) -> Iterator[Blob | Skip]:
        yield Blob(None, 0, (Place(STDIN_PATH, "stdin"),), self.stream)

    def read(self, blobs: Sequence[Blob]) -> Iterator[Opened | Skip]:
        for blob in blobs:
            inner = file_reader(blob.ref)
            cut: bool | None = None  # known once the limit is reached

            def read(n: int) -> bytes:
                nonlocal cut
                want = n
                if self.max_bytes is not None:
                    n = min(n, self.max_bytes - self.read_bytes)
                data = inner(n) if n > 0 else b""
                self.read_bytes += len(data)
                if len(data) < want and cut is None and self.max_bytes is not None and self.read_bytes >= self.max_bytes:
                    cut = bool(blob.ref.read(1))  # more was there: say it was not scanned
                return data

            yield blob, read
            if cut:
                yield Skip(STDIN_PATH, f"larger than {self.max_bytes / (1 << 20):g} MiB (--max-target-mb): "
                                       "only the first part was scanned")  # fmt: skip
