"""Which commits the GitHub Action scans (leakscan/ci.py), with real repositories: a plain push,
a branch's first push, the default branch's first push, force pushes, a pull request, and a push
that moved nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from helpers import HF, Repo, leakscan, token
from leakscan.ci import choose

ZERO = "0" * 40


@pytest.fixture
def clone(tmp_path: Path):
    """A CI checkout: `main` with two commits, pushed to an origin, cloned with all history."""
    work = Repo(tmp_path / "work")
    c1 = work.commit({"a.txt": "one\n"})
    c2 = work.commit({"b.txt": "two\n"})
    origin = tmp_path / "origin.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(work.path), str(origin)], check=True)
    work.git("remote", "add", "origin", str(origin))
    work.git("fetch", "-q", "origin")
    return work, c1, c2


def test_plain_push_scans_before_to_after(clone):
    work, c1, c2 = clone
    got = choose(work.path, event="push", before=c1, after=c2, ref="refs/heads/main", default_branch="main")
    assert got.range == f"{c1}..{c2}" and got.why == "push: the pushed commits"


def test_push_that_moved_nothing_scans_its_last_commit_not_an_empty_range(clone):
    work, c1, c2 = clone
    assert choose(work.path, event="push", before=c2, after=c2).range == f"{c1}..{c2}"
    assert choose(work.path, event="push", before=c1, after=c1).range == c1  # a root commit: all of it


def test_first_push_of_a_branch_scans_what_it_adds_over_the_default_branch(clone):
    work, c1, c2 = clone
    work.git("checkout", "-q", "-b", "feature")
    f1 = work.commit({"f.txt": "feature\n"})
    got = choose(work.path, event="push", before=ZERO, after=f1, ref="refs/heads/feature", default_branch="main")
    assert got.range == f"{c2}..{f1}" and got.why == "a new branch: what it adds over main"


def test_first_push_of_the_default_branch_scans_everything(clone):
    work, c1, c2 = clone
    got = choose(work.path, event="push", before=ZERO, after=c2, ref="refs/heads/main", default_branch="main")
    assert got.range == c2 and got.why == "a new branch: the whole history"


def test_force_push_scans_from_the_common_ancestor(clone):
    work, c1, c2 = clone
    work.git("reset", "-q", "--hard", c1)
    n1 = work.commit({"c.txt": "rewritten\n"})
    got = choose(work.path, event="push", before=c2, after=n1, ref="refs/heads/main", default_branch="main")
    assert got.range == f"{c1}..{n1}"
    assert got.why == "force push: what the new history adds over the common ancestor"


def test_force_push_whose_old_tip_this_clone_lacks(clone):
    work, c1, c2 = clone
    work.git("checkout", "-q", "-b", "topic")
    t1 = work.commit({"t.txt": "topic\n"})
    gone = "1234567890abcdef1234567890abcdef12345678"
    got = choose(work.path, event="push", before=gone, after=t1, ref="refs/heads/topic", default_branch="main")
    assert got.range == f"{c2}..{t1}"
    assert got.why.startswith(f"the commit before the push ({gone}) is not in this clone")
    on_main = choose(work.path, event="push", before=gone, after=c2, ref="refs/heads/main", default_branch="main")
    assert on_main.range == c2  # nothing to compare with: the whole history


def test_pull_request_scans_base_to_head(clone):
    work, c1, c2 = clone
    work.git("checkout", "-q", "-b", "pr", c1)
    p1 = work.commit({"p.txt": "pr\n"})
    got = choose(work.path, event="pull_request", base=c2, head=p1)
    assert got.range == f"{c2}..{p1}" and got.why == "pull request: its commits over the base"
    gitlab = choose(work.path, event="merge_request_event", before=ZERO, after=p1, base=c2, head=p1)
    assert gitlab == got


def test_the_chosen_range_scans_only_the_branch_secret(clone):
    """End to end as the action runs it: the script prints the range, `leakscan scan --range`
    reports the secret the branch brought and not the one already on main."""
    work, c1, c2 = clone
    old, new = token(HF, "main"), token(HF, "branch")
    work.git("checkout", "-q", "main")
    m = work.commit({"old.env": f"HF_TOKEN={old}\n"})
    work.git("push", "-q", "origin", "main")
    work.git("fetch", "-q", "origin")
    work.git("checkout", "-q", "-b", "feature")
    f1 = work.commit({"new.env": f"HF_TOKEN={new}\n"})
    proc = subprocess.run([sys.executable, "-m", "leakscan.ci", "range", "--event", "push", "--before", ZERO,
                           "--after", f1, "--ref", "refs/heads/feature", "--default-branch", "main"],
                          cwd=work.path, capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"{m}..{f1}\n"
    assert proc.stderr == f"leakscan: scanning {m}..{f1}: a new branch: what it adds over main\n"
    run = leakscan("scan", work.path, "--range", proc.stdout.strip(), "-f", "json", "--no-cache")
    assert run.code == 1, run.err
    assert [(f["path"], f["secret"], f["commit"]) for f in run.json] == [("new.env", new, f1)]


def test_a_head_this_clone_lacks_is_one_line(clone):
    work, _, _ = clone
    proc = subprocess.run([sys.executable, "-m", "leakscan.ci", "range", "--event", "pull_request", "--base", ZERO,
                           "--head", "1" * 40], cwd=work.path, capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr == f"leakscan: error: the pull request's head '{'1' * 40}' is not in this clone (fetch-depth: 0?)\n"
