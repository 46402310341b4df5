"""Which commits a CI run should scan, for the GitHub Action (action.yml) and other CI systems:

    python -m leakscan.ci range --event push --before SHA --after SHA --ref refs/heads/x --default-branch main
    python -m leakscan.ci range --event pull_request --base SHA --head SHA

prints a value for `leakscan scan --range` and, on stderr, why:

* pull request: `base..head`, the pull request's own commits (whatever the base branch did since);
* push: `before..after`;
* first push of a branch (`before` is all zeros): what the branch adds over the default branch
  (`origin/<default>..after`); the default branch's own first push: all of `after`'s history;
* force push (`before` is not in `after`'s history, or this clone lacks it): from their merge base
  (`merge-base..after`), else as for a first push;
* `before == after` (a push that moved nothing, a re-run): nothing new, so the last commit
  (`after^..after`, or all of a root commit) rather than the empty range TruffleHog's action
  fails on ("BASE and HEAD commits are the same").

The checkout needs the history (`actions/checkout` with `fetch-depth: 0`); what is missing is
said on stderr and the range widens rather than failing.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

ZERO = frozenset({"0" * 40, "0" * 64})
# GitHub's pull-request events and GitLab's CI_PIPELINE_SOURCE of a merge-request pipeline
PULL_EVENTS = frozenset({"pull_request", "pull_request_target", "merge_request_event"})


@dataclass(frozen=True)
class Choice:
    range: str  # for `leakscan scan --range`: "A..B", or "B" alone for all of B's history
    why: str


def choose(repo_path: str | Path, *, event: str, before: str | None = None, after: str | None = None,
           base: str | None = None, head: str | None = None, ref: str | None = None,
           default_branch: str | None = None, remote: str = "origin") -> Choice:  # fmt: skip
    from .sources.git import GitSourceError, open_repo

    repo = open_repo(repo_path)

    def commit(rev: str | None) -> str | None:
        if not rev or rev in ZERO:
            return None
        try:
            return repo.resolve(rev)
        except GitSourceError:
            return None

    if event in PULL_EVENTS:
        h, b = commit(head), commit(base)
        if h is None:
            raise GitSourceError(f"the pull request's head {head!r} is not in this clone (fetch-depth: 0?)")
        if b is None:
            return _first_push(repo, commit, h, ref, default_branch, remote, f"the base {base!r} is not in this clone")
        return Choice(f"{b}..{h}", "pull request: its commits over the base")
    a = commit(after) or commit("HEAD")
    if a is None:
        raise GitSourceError("nothing to scan: no commit after the push and no HEAD")
    if before and before in ZERO:
        return _first_push(repo, commit, a, ref, default_branch, remote, "a new branch")
    b = commit(before)
    if b is None:
        return _first_push(repo, commit, a, ref, default_branch, remote,
                           f"the commit before the push ({before}) is not in this clone (force push, or fetch-depth)")  # fmt: skip
    if b == a:
        parent = commit(f"{a}^")
        return Choice(f"{parent}..{a}" if parent else a, "the push moved nothing: its last commit")
    if repo.is_ancestor(b, a):
        return Choice(f"{b}..{a}", "push: the pushed commits")
    mb = repo.merge_base(b, a)
    if mb is not None:
        return Choice(f"{mb}..{a}", "force push: what the new history adds over the common ancestor")
    return _first_push(repo, commit, a, ref, default_branch, remote, "force push with no common history")


def _first_push(repo, commit, tip: str, ref: str | None, default_branch: str | None, remote: str,
                why: str) -> Choice:  # fmt: skip
    branch = (ref or "").removeprefix("refs/heads/")
    if default_branch and branch != default_branch:
        for name in (f"refs/remotes/{remote}/{default_branch}", f"refs/heads/{default_branch}"):
            d = commit(name)
            if d is not None and d != tip:
                return Choice(f"{d}..{tip}", f"{why}: what it adds over {default_branch}")
    return Choice(tip, f"{why}: the whole history")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m leakscan.ci", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("range", help="print the value for `leakscan scan --range`")
    r.add_argument("--repo", default=".")
    r.add_argument("--event", required=True, help="push, pull_request (GitHub), merge_request_event (GitLab)…")
    for name in ("before", "after", "base", "head", "ref", "default-branch"):
        r.add_argument(f"--{name}", default=None)
    r.add_argument("--remote", default="origin")
    args = parser.parse_args(argv)
    from .sources.git import GitSourceError

    try:
        choice = choose(args.repo, event=args.event, before=args.before, after=args.after, base=args.base,
                        head=args.head, ref=args.ref, default_branch=args.default_branch, remote=args.remote)  # fmt: skip
    except GitSourceError as exc:
        print(f"leakscan: error: {exc}", file=sys.stderr)
        return 2
    print(f"leakscan: scanning {choice.range}: {choice.why}", file=sys.stderr)
    print(choice.range)
    return 0


if __name__ == "__main__":
    sys.exit(main())
