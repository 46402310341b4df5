"""Pre-receive hook latency: pushes of 10 commits touching 100 files into a repository with 17k
commits of history, with the hook installed, side by side with the same pushes without it and
with `git cat-file` reading the same objects.

Builds (once, in the user cache dir) a bare repository of 17,000 commits, then for each of N
rounds creates a branch with 10 new commits (100 files changed in all), pushes it to a copy with
the leakscan hook and to a copy without, and prints p50/p95 of each plus the hook's own share.
Usage: python benchmarks/bench_hook.py [--rounds N] [--commits 17000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import platformdirs

ENV = {**os.environ, "GIT_AUTHOR_NAME": "B", "GIT_AUTHOR_EMAIL": "b@e.org", "GIT_COMMITTER_NAME": "B",
       "GIT_COMMITTER_EMAIL": "b@e.org", "LEAKSCAN_NO_VERIFY": "1"}  # fmt: skip


def build(repo: Path, commits: int) -> None:
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(repo)], check=True)
    fi = subprocess.Popen(["git", "fast-import", "--quiet"], cwd=repo, stdin=subprocess.PIPE)
    w = fi.stdin.write
    for c in range(commits):
        w(b"commit refs/heads/main\ncommitter B <b@e.org> %d +0000\n" % (1_600_000_000 + c))
        msg = b"commit %d" % c
        w(b"data %d\n%s\n" % (len(msg), msg))
        for j in range(3):
            body = b"# module %d\nVALUE_%d = %d\n" % (c % 400, j, c) + b"x = 1\n" * 50
            w(b"M 100644 inline pkg%d/mod%d.py\ndata %d\n%s\n" % (c % 40, (c + j) % 400, len(body), body))
    fi.stdin.close()
    if fi.wait():
        raise SystemExit("fast-import failed")
    subprocess.run(["git", "repack", "-q", "-a", "-d"], cwd=repo, check=True)


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--commits", type=int, default=17000)
    args = ap.parse_args()
    base = Path(platformdirs.user_cache_dir("leakscan")) / "bench" / f"hook-{args.commits}.git"
    if not base.exists():
        print(f"building a {args.commits}-commit repository …", flush=True)
        tmp = base.with_suffix(".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.parent.mkdir(parents=True, exist_ok=True)
        build(tmp, args.commits)
        tmp.rename(base)
    work = Path(tempfile.mkdtemp(prefix="leakscan-hook-bench-"))
    try:
        hooked, plain, wt = work / "hooked.git", work / "plain.git", work / "wt"
        for dest in (hooked, plain):
            subprocess.run(["git", "clone", "-q", "--bare", str(base), str(dest)], check=True)
        subprocess.run([sys.executable, "-m", "leakscan", "hook", "install", str(hooked)], check=True, capture_output=True)
        subprocess.run(["git", "clone", "-q", str(base), str(wt)], check=True)
        with_hook, without, catfile = [], [], []
        for r in range(args.rounds):
            subprocess.run(["git", "checkout", "-q", "-B", f"r{r}", "origin/main"], cwd=wt, check=True)
            for c in range(10):
                for f in range(10):
                    p = wt / f"feature{r}" / f"file{c}_{f}.py"
                    p.parent.mkdir(exist_ok=True)
                    p.write_text(f"# round {r} commit {c}\nvalue = {r * 1000 + c * 10 + f}\n" + "y = 2\n" * 40)
                subprocess.run(["git", "add", "-A"], cwd=wt, check=True, env=ENV)
                subprocess.run(["git", "commit", "-q", "-m", f"r{r} c{c}"], cwd=wt, check=True, env=ENV)
            for dest, times in ((hooked, with_hook), (plain, without)):
                start = time.perf_counter()
                proc = subprocess.run(["git", "push", "-q", str(dest), f"r{r}"], cwd=wt, env=ENV, capture_output=True)
                times.append(time.perf_counter() - start)
                if proc.returncode:
                    raise SystemExit(f"push refused: {proc.stderr.decode()[-500:]}")
            objs = subprocess.run(["git", "rev-list", "--objects", f"r{r}", "--not", "origin/main"], cwd=wt,
                                  capture_output=True, text=True, check=True).stdout  # fmt: skip
            start = time.perf_counter()
            subprocess.run(["git", "cat-file", "--batch"], cwd=wt, input="".join(l.split()[0] + "\n" for l in objs.splitlines()).encode(),
                           capture_output=True, check=True)  # fmt: skip
            catfile.append(time.perf_counter() - start)
        hook_share = [a - b for a, b in zip(with_hook, without)]
        print(f"repository: {args.commits} commits; {args.rounds} pushes of 10 commits touching 100 files")
        print(f"push with the leakscan hook : p50 {pct(with_hook, 50):.3f} s  p95 {pct(with_hook, 95):.3f} s")
        print(f"push without a hook         : p50 {pct(without, 50):.3f} s  p95 {pct(without, 95):.3f} s")
        print(f"the hook's own time         : p50 {pct(hook_share, 50):.3f} s  p95 {pct(hook_share, 95):.3f} s")
        print(f"git cat-file of the pushed objects: p50 {statistics.median(catfile) * 1000:.1f} ms")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
