"""Working-tree scan speed: matcher MB/s and whole-scan MB/s, with references from the same run.

Builds a corpus from the Python standard library on this machine (source code much like an ML
repo's), plants generated tokens, and prints:
  * matcher throughput (in-memory bytes → candidates) for Hyperscan and the regex fallback;
  * `leakscan scan` wall time and MB/s, cold (no Hyperscan cache) and warm;
  * reference: `grep -rE` for a single token pattern over the same tree, and the ratio;
  * that every planted token was found.
Usage: python benchmarks/bench_scan.py [--copies N]
"""

from __future__ import annotations

import argparse
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

from leakscan.detectors import load_rules
from leakscan.examples import expand
from leakscan.matcher import Matcher

TEMPLATES = ["hf_{alpha:34}", "{crc-token:ghp:30}", "sk-proj-{b64url:74}T3BlbkFJ{b64url:74}"]


def build_corpus(dest: Path, copies: int, rng: random.Random) -> tuple[int, list[str]]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in stdlib.rglob("*.py") if "site-packages" not in p.parts and p.is_file())
    total, planted = 0, []
    for c in range(copies):
        for i, src in enumerate(files):
            out = dest / f"copy{c}" / src.relative_to(stdlib)
            out.parent.mkdir(parents=True, exist_ok=True)
            data = src.read_bytes()
            if i % 400 == 0:
                tok = expand(rng.choice(TEMPLATES), rng)[1]
                planted.append(tok)
                data += f'\nAPI_TOKEN = "{tok}"\n'.encode()
            out.write_bytes(data)
            total += len(data)
    return total, planted


def timed(cmd: list[str], **kw) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, **kw)
    return time.perf_counter() - start, proc


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--copies", type=int, default=1, help="copies of the stdlib in the corpus")
    args = ap.parse_args()
    rng = random.Random(1)
    work = Path(tempfile.mkdtemp(prefix="leakscan-bench-"))
    try:
        corpus = work / "corpus"
        size, planted = build_corpus(corpus, args.copies, rng)
        mb = size / 1e6
        print(f"corpus: {mb:.1f} MB, {sum(1 for _ in corpus.rglob('*.py'))} files, {len(planted)} planted tokens")

        blob = b"".join(p.read_bytes() for p in sorted(corpus.rglob("*.py")))
        rules = load_rules()
        for engine in ("hyperscan", "regex"):
            m = Matcher(rules, engine)
            start = time.perf_counter()
            step = 4 << 20
            n = sum(len(m.scan(blob[i : i + step])) for i in range(0, len(blob), step))
            dt = time.perf_counter() - start
            print(f"matcher {engine:9}: {len(blob) / 1e6 / dt:8.1f} MB/s ({n} candidates)")

        env = {**os.environ, "LEAKSCAN_CACHE_DIR": str(work / "cache")}
        cmd = [sys.executable, "-m", "leakscan", "scan", str(corpus), "--no-verify", "-f", "json", "-o", str(work / "r.json")]
        cold, proc = timed(cmd, env=env)
        warm, proc = timed(cmd, env=env)
        report = (work / "r.json").read_text()
        missing = [t for t in planted if t not in report]
        grep, _ = timed(["grep", "-rEc", "hf_[A-Za-z0-9]{34}", str(corpus)])
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(f"leakscan scan cold : {cold:6.2f} s  {mb / cold:7.1f} MB/s (compiles the Hyperscan database)")
        print(f"leakscan scan warm : {warm:6.2f} s  {mb / warm:7.1f} MB/s")
        print(f"grep -rE (1 regex) : {grep:6.2f} s  {mb / grep:7.1f} MB/s")
        print(f"ratio leakscan warm / grep: {warm / grep:.2f}")
        print(f"gitleaks reference (issue): 6.7 MB in 1.7 s = 3.9 MB/s; leakscan warm is {mb / warm / 3.9:.1f}x that")
        print(f"peak RSS of child processes: {peak:.0f} MB")
        print(f"planted tokens found: {len(planted) - len(missing)}/{len(planted)}")
        if missing:
            sys.exit("some planted tokens were not found")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
