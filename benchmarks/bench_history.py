"""Full-history scan speed against the floor of reading every object once.

Builds (once, cached in the user cache dir, outside this repo) a repository of thousands of commits made from the
Python standard library on this machine, > 1 GB of unique blob data, with tokens planted in
some commits (some removed again, some on a side branch, some only in commit messages), then
prints in one run:
  * the floor: `git cat-file --batch-all-objects --batch > /dev/null`;
  * `leakscan scan REPO` (full history, no cache) time, ratio to the floor, MB/s, peak RSS;
  * a rescan after one new commit, with the scan cache;
  * that every planted token was found.
Usage: python benchmarks/bench_history.py [--commits N] [--files-per-commit N]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import platformdirs

from leakscan.examples import expand

HERE = Path(__file__).resolve().parent
TEMPLATES = ["hf_{alpha:34}", "{crc-token:ghp:30}", "sk-proj-{b64url:74}T3BlbkFJ{b64url:74}"]


def build(repo: Path, commits: int, per_commit: int) -> list[str]:
    """fast-import stream: each commit rewrites `per_commit` stdlib files with a new header, so
    every blob is unique. Returns the planted tokens."""
    rng = random.Random(42)
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    sources = sorted(p for p in stdlib.rglob("*.py") if "site-packages" not in p.parts)
    texts = [p.read_bytes() for p in sources]
    names = [str(p.relative_to(stdlib)) for p in sources]
    planted = []
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(repo)], check=True)
    fi = subprocess.Popen(["git", "fast-import", "--quiet"], cwd=repo, stdin=subprocess.PIPE)
    w = fi.stdin.write
    mark = 0
    for c in range(commits):
        branch = "refs/heads/side" if c % 97 == 50 else "refs/heads/main"
        message = f"commit {c}"
        if c % 500 == 250:
            tok = expand(rng.choice(TEMPLATES), rng)[1]
            planted.append(tok)
            message += f" with {tok}"
        files = []
        for j in range(per_commit):
            i = rng.randrange(len(texts))
            body = f"# revision {c}.{j}\n".encode() + texts[i]
            if (c * per_commit + j) % 1500 == 700:
                tok = expand(rng.choice(TEMPLATES), rng)[1]
                planted.append(tok)
                body += f'\nAPI_TOKEN = "{tok}"\n'.encode()
            files.append((names[i], body))
        w(b"commit %s\n" % branch.encode())
        mark += 1
        w(b"mark :%d\n" % mark)
        w(b"committer Bench <bench@example.org> %d +0000\n" % (1_600_000_000 + c * 60))
        msg = message.encode()
        w(b"data %d\n%s\n" % (len(msg), msg))
        for name, body in files:  # the side branch is its own line of history
            w(b"M 100644 inline %s\ndata %d\n" % (name.encode(), len(body)))
            w(body + b"\n")
    fi.stdin.close()
    if fi.wait() != 0:
        raise SystemExit("fast-import failed")
    subprocess.run(["git", "repack", "-q", "-a", "-d"], cwd=repo, check=True)
    return planted


def timed(cmd, **kw):
    start = time.perf_counter()
    proc = subprocess.run(cmd, **kw)
    return time.perf_counter() - start, proc


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--commits", type=int, default=3000)
    ap.add_argument("--files-per-commit", type=int, default=22)
    args = ap.parse_args()
    corpus = Path(platformdirs.user_cache_dir("leakscan")) / "bench" / f"history-{args.commits}x{args.files_per_commit}.git"
    tokens_file = corpus.with_suffix(".tokens.json")
    if not corpus.exists():
        print(f"building {corpus.name} …", flush=True)
        tmp = corpus.with_suffix(".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.parent.mkdir(parents=True, exist_ok=True)
        planted = build(tmp, args.commits, args.files_per_commit)
        tokens_file.write_text(json.dumps(planted))
        tmp.rename(corpus)
    planted = json.loads(tokens_file.read_text())
    sizes = subprocess.run(["git", "cat-file", "--batch-all-objects", "--batch-check=%(objecttype) %(objectsize)"],
                           cwd=corpus, capture_output=True, text=True, check=True).stdout.split("\n")  # fmt: skip
    blob_bytes = sum(int(l.split()[1]) for l in sizes if l.startswith("blob "))
    blobs = sum(1 for l in sizes if l.startswith("blob "))
    print(f"corpus: {args.commits} commits, {blobs} unique blobs, {blob_bytes / 1e9:.2f} GB of blob data, "
          f"{len(planted)} planted tokens")  # fmt: skip

    floor, _ = timed(["git", "cat-file", "--batch-all-objects", "--batch"], cwd=corpus, stdout=subprocess.DEVNULL, check=True)
    unordered, _ = timed(["git", "cat-file", "--batch-all-objects", "--batch", "--unordered"], cwd=corpus,
                         stdout=subprocess.DEVNULL, check=True)  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="leakscan-bench-"))
    try:
        env = {**os.environ, "LEAKSCAN_CACHE_DIR": str(work / "cache")}
        report = work / "r.json"
        base = [sys.executable, "-m", "leakscan", "scan", "--no-verify"]  # scanning speed, not the network
        out = ["-f", "json", "-o", str(report)]
        cmd = [*base, str(corpus), *out]
        subprocess.run([sys.executable, "-m", "leakscan", "scan", str(HERE), "--no-history"], env=env,
                       capture_output=True)  # fmt: skip  (compiles and caches the Hyperscan database)
        full, proc = timed([*cmd, "--no-cache"], env=env, capture_output=True, text=True)
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        found = report.read_text()
        missing = [t for t in planted if t not in found]
        print(f"floor (cat-file --batch-all-objects --batch): {floor:6.2f} s")
        print(f"  same with --unordered (pack order)        : {unordered:6.2f} s")
        print(f"leakscan full history                       : {full:6.2f} s  ratio {full / floor:.2f} "
              f"(vs --unordered {full / unordered:.2f})  {blob_bytes / 1e6 / full:6.0f} MB/s  "
              f"peak RSS ≤ {peak:.0f} MB")  # fmt: skip
        print(f"  {proc.stderr.strip()}")

        db = work / "store.sqlite3"
        subprocess.run([*cmd, "--db", str(db)], env=env, capture_output=True, check=False)
        clone = work / "clone"
        subprocess.run(["git", "clone", "-q", "--mirror", str(corpus), str(clone)], check=True)
        subprocess.run([*base, str(clone), "--db", str(db), *out], env=env,
                       capture_output=True)  # fmt: skip
        wt = work / "wt"
        subprocess.run(["git", "clone", "-q", "-b", "main", str(clone), str(wt)], check=True)
        (wt / "new_file.py").write_text("print('one more commit')\n")
        subprocess.run(["git", "-C", str(wt), "add", "."], check=True)
        subprocess.run(["git", "-C", str(wt), "-c", "user.name=B", "-c", "user.email=b@e.org", "commit", "-qm", "one more"], check=True)
        subprocess.run(["git", "-C", str(wt), "push", "-q", "origin", "HEAD:main"], check=True)
        again, proc = timed([*base, str(clone), "--db", str(db), *out],
                            env=env, capture_output=True, text=True)  # fmt: skip
        print(f"rescan after one new commit (scan cache)    : {again:6.2f} s  ({proc.stderr.strip()})")
        print(f"planted tokens found: {len(planted) - len(missing)}/{len(planted)}")
        if missing:
            sys.exit(f"missing: {missing[:3]}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
