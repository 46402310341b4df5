"""The driver's ordering of work across sources: a source whose listing is independent is listed
in a thread alongside the first one's and, while workers scan the first, scanned by the driver;
its findings, its `finish` and any error of its listing come out as if it had run in turn."""

from __future__ import annotations

import threading

import pytest

from helpers import GHP, HF, token
from leakscan.detectors import load_rules
from leakscan.model import Place
from leakscan.pipeline import PARALLEL_MIN_BYTES, run
from leakscan.scan import Scanner
from leakscan.sources.base import Blob, Source, bytes_opener


@pytest.fixture(scope="module")
def scanner():
    return Scanner(load_rules())


class Listed(Source):
    """Blobs carrying their bytes; records the thread its listing ran in and the order of
    `finish` calls."""

    opener = staticmethod(bytes_opener)

    def __init__(self, name: str, texts: list[bytes], log: list, independent: bool = False, fail: bool = False) -> None:
        self.name, self.texts, self.log, self.fail = name, texts, log, fail
        self.independent_listing = independent

    def listing(self):
        self.log.append((self.name, "listing", threading.current_thread() is threading.main_thread()))
        if self.fail:
            raise ValueError(f"{self.name}: listing failed")
        for i, text in enumerate(self.texts):
            yield Blob(None, len(text), (Place(f"{self.name}/{i}.txt"),), text)

    def finish(self, findings, scanned):
        self.log.append((self.name, "finish", len(findings)))
        return findings


def big(secret: str) -> list[bytes]:
    """Enough bytes that the first source is scanned by worker processes."""
    filler = b"x = 1\n" * (PARALLEL_MIN_BYTES // 6 // 8 + 1)
    return [filler] * 7 + [filler + f"gh = '{secret}'\n".encode()]


def test_an_independent_source_is_listed_alongside_and_scanned_while_workers_scan(scanner):
    first, second = token(GHP, "pipe-1"), token(HF, "pipe-2")
    log: list = []
    a = Listed("a", big(first), log)
    b = Listed("b", [f"HF_TOKEN={second}\n".encode()], log, independent=True)
    c = Listed("c", [b"nothing here\n"], log)
    result = run([a, b, c], scanner)
    assert sorted((f.path, f.secret) for f in result.findings) == [("a/7.txt", first), ("b/0.txt", second)]
    assert ("b", "listing", False) in log and ("a", "listing", True) in log  # b's in a thread of its own
    assert [e for e in log if e[1] == "finish"] == [("a", "finish", 1), ("b", "finish", 1), ("c", "finish", 0)]
    assert result.stats.files == 10


def test_an_error_in_an_independent_listing_is_the_run_s_error(scanner):
    log: list = []
    with pytest.raises(ValueError, match="b: listing failed"):
        run([Listed("a", [b"a = 1\n"], log), Listed("b", [], log, independent=True, fail=True)], scanner)
    assert ("b", "listing", False) in log
