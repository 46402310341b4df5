"""The table report: drawn directly above PLAIN_ROWS findings, as rich would draw it."""

from __future__ import annotations

import io
import random
import time

from leakscan import report
from leakscan.model import Finding, Skip


def findings(n: int, rng: random.Random) -> list[Finding]:
    return [Finding(rng.choice(["huggingface-access-token", "generic-api-key"]), "p", "d", "s", "0",
                    rng.choice(["hf_Ab…yz", "…", "sk-pr…Qz"]), rng.choice(["a.env", "dir/café.py", "x/y/z.txt"]),
                    5000 + i, rng.randint(1, 300), rng.choice([None, "abcdef1234567"]), "file",
                    rng.choice([None, "base64@5", "notebook.ipynb!cell 3"]), "f",
                    verification=rng.choice(["unverified", "verified", "invalid"]),
                    repo=rng.choice([None, "org/model"]))  # fmt: skip
            for i in range(1, n + 1)]


def render(found: list[Finding]) -> str:
    out = io.StringIO()
    report.table(found, [Skip("x.bin", "why")], out, summary="done", color=False)
    return out.getvalue()


def test_many_rows_are_drawn_as_rich_draws_them(monkeypatch):
    # (lines from 5000: rich would turn a location like `a.env:100:3` into an emoji, 💯)
    found = findings(report.PLAIN_ROWS + 200, random.Random(1))
    plain = render(found)
    monkeypatch.setattr(report, "PLAIN_ROWS", len(found))  # rich draws this one
    assert plain == render(found)
    assert plain.count("\n") == len(found) + 4 + 2 and plain.endswith("skipped x.bin: why\ndone\n")


def test_85000_rows_render_in_bounded_time():
    found = findings(85_000, random.Random(2))
    started = time.process_time()
    text = render(found)
    assert time.process_time() - started < 20  # rich took 75 s of CPU
    assert text.count("\n") == 85_000 + 6
