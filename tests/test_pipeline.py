"""The driver's ordering of work across sources: a source whose listing is independent is listed
alongside the first one's (in a process of its own when workers may be forked, else in a thread)
and, while workers scan the first, scanned by the driver; its findings, its `finish` and any error
of its listing come out as if it had run in turn."""

from __future__ import annotations

import os
import multiprocessing
import threading
import time
from pathlib import Path

import pytest

from helpers import GHP, HF, token
from leakscan.detectors import load_rules
from leakscan.model import Place
from leakscan.pipeline import PARALLEL_MIN_BYTES, default_jobs, run
from leakscan.scan import Scanner
from leakscan.sources.base import Blob, Source, bytes_opener


@pytest.fixture(scope="module")
def scanner():
    return Scanner(load_rules())


class Unpicklable(Exception):
    def __reduce__(self):
        raise TypeError("not picklable")


class Listed(Source):
    """Blobs carrying their bytes; records the order of `finish` calls, and in `where` (a file:
    a forked process's list would not be seen) where its listing ran: ("process", pid) or
    ("thread", whether the main one)."""

    opener = staticmethod(bytes_opener)

    def __init__(self, name: str, texts: list[bytes], log: list, independent: bool = False, fail=None,
                 where: Path | None = None) -> None:  # fmt: skip
        self.name, self.texts, self.log, self.fail, self.where = name, texts, log, fail, where
        self.independent_listing = independent

    def listing(self):
        if self.where is not None:
            with open(self.where, "a") as fh:
                fh.write(f"{self.name} {os.getpid()} {threading.current_thread() is threading.main_thread()}\n")
        if self.fail == "exit":
            os._exit(3)
        if self.fail == "hang":
            time.sleep(60)
        if self.fail is not None:
            raise self.fail
        for i, text in enumerate(self.texts):
            yield Blob(None, len(text), (Place(f"{self.name}/{i}.txt"),), text)

    def finish(self, findings, scanned):
        self.log.append((self.name, "finish", len(findings)))
        return findings


def big(secret: str) -> list[bytes]:
    """Enough bytes that the first source is scanned by worker processes."""
    filler = b"x = 1\n" * (PARALLEL_MIN_BYTES // 6 // 8 + 1)
    return [filler] * 7 + [filler + f"gh = '{secret}'\n".encode()]


def forked(fn, *args):
    """`fn(*args)` in a process forked for it, its value returned and its exception raised here.
    The pipeline forks a listing process only where no other thread runs, and this xdist worker
    may still run one an earlier test left (an idle executor's, a reader's): the fork leaves
    them behind, as the `leakscan` command starts with none."""
    ctx = multiprocessing.get_context("fork")
    receive, send = ctx.Pipe(duplex=False)

    def child() -> None:
        try:
            send.send((True, fn(*args)))
        except BaseException as exc:
            send.send((False, exc))

    proc = ctx.Process(target=child)
    proc.start()
    send.close()
    try:
        ok, value = receive.recv()
    finally:
        proc.join()
    if not ok:
        raise value
    return value


def _where(path: Path) -> dict[str, tuple[bool, bool]]:
    """name → (listed in this process, in its main thread)."""
    rows = [line.split() for line in path.read_text().splitlines()]
    return {name: (int(pid) == os.getpid(), main == "True") for name, pid, main in rows}


@pytest.mark.parametrize("jobs", [None, 2, 1])
def test_an_independent_source_is_listed_alongside_and_scanned_while_workers_scan(scanner, tmp_path, jobs):
    """With workers to fork, in a process forked before them (a thread would have to end before
    any fork); with one job, in a thread."""
    first, second = token(GHP, "pipe-1"), token(HF, "pipe-2")
    where = tmp_path / "where"

    def scan():
        log: list = []
        a = Listed("a", big(first), log, where=where)
        b = Listed("b", [f"HF_TOKEN={second}\n".encode()], log, independent=True, where=where)
        c = Listed("c", [b"nothing here\n"], log, where=where)
        result = run([a, b, c], scanner, jobs=jobs)
        # b: (listed in the process that ran the pipeline, in its main thread)
        return sorted((f.path, f.secret) for f in result.findings), _where(where), log, result.stats.files

    findings, placed, log, files = forked(scan)
    assert findings == [("a/7.txt", first), ("b/0.txt", second)]
    in_process = (jobs or default_jobs()) > 1
    assert placed == {"a": (True, True), "b": (False, True) if in_process else (True, False), "c": (True, True)}
    assert [e for e in log if e[1] == "finish"] == [("a", "finish", 1), ("b", "finish", 1), ("c", "finish", 0)]
    assert files == 10


@pytest.mark.parametrize(("jobs", "fail", "error", "message"), [
    (2, ValueError("b: listing failed"), ValueError, "^b: listing failed$"),
    (1, ValueError("b: listing failed"), ValueError, "^b: listing failed$"),
    (2, Unpicklable("b: not picklable"), RuntimeError, "^Unpicklable: b: not picklable$"),
    (1, Unpicklable("b: not picklable"), Unpicklable, "^b: not picklable$"),
    (2, "exit", RuntimeError, r"^the listing process ended without a listing \(exit code 3\)$"),
])  # fmt: skip
def test_an_error_in_an_independent_listing_is_the_run_s_error(scanner, tmp_path, jobs, fail, error, message):
    where = tmp_path / "where"
    sources = [Listed("a", [b"a = 1\n"], [], where=where), Listed("b", [], [], independent=True, fail=fail, where=where)]
    with pytest.raises(error, match=message):
        if jobs == 1:
            run(sources, scanner, jobs=jobs)  # a thread: an unpicklable error comes back as it was
        else:
            forked(lambda: run(sources, scanner, jobs=jobs))
    assert "b" in _where(where)


def test_a_listing_process_still_running_when_the_run_fails_is_ended(scanner, tmp_path):
    where = tmp_path / "where"

    def scan():
        started = time.monotonic()
        with pytest.raises(ValueError, match="^a: listing failed$"):
            run([Listed("a", [], [], fail=ValueError("a: listing failed"), where=where),
                 Listed("b", [], [], independent=True, fail="hang", where=where)], scanner, jobs=2)  # fmt: skip
        return time.monotonic() - started, multiprocessing.active_children()

    took, children = forked(scan)
    assert took < 30 and children == []
