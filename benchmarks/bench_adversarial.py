"""Files built to be slow or to hide a token by size, scanned end to end (issue 15, items 1 and 9).

Builds, in a temporary directory:
  * 85,000 lines `HF_TOKEN=hf_<34 random letters>` (4 MB): took 200 s with the pairwise matcher;
  * 85,000 distinct lines `api_key = "<40 random characters>"`;
  * 85,000 lines mixing both, alternately;
  * the first at 5,000 and 20,000 lines too, to show the growth is linear;
  * a 200 MB base64 blob and a 100 MB UTF-16 blob of text with tokens planted at random places.
For each it runs `leakscan scan FILE --no-verify` (the held-out command: the default table on
stdout, sent to /dev/null) and prints wall time, CPU time and peak RSS of that process, with, for
reference in the same run, `wc -l FILE` and the raw scan (`--no-decode`, and `-f jsonl` where the
table's rendering is worth separating), as ratios. Every planted token must be found.
Usage: python benchmarks/bench_adversarial.py [--skip-lines | --skip-blobs] [--base64-mb 200] [--utf16-mb 100]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import shutil
import string
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

LETTERS = string.ascii_letters
CHARS = string.ascii_letters + string.digits


@dataclass
class Run:
    wall: float
    cpu: float
    rss_mb: float
    code: int


def run(cmd: list[str], out: Path | None = None) -> Run:
    """Wall and CPU time and peak RSS of one child (os.wait4: its own rusage, not the max of all)."""
    env = {**os.environ, "LEAKSCAN_NO_VERIFY": "1"}
    with open(out or os.devnull, "wb") as fh:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.DEVNULL, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Run(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, proc.returncode)


def leakscan(path: Path, *extra: str, out: Path | None = None) -> Run:
    return run([sys.executable, "-m", "leakscan", "scan", str(path), "--no-verify", *extra], out)


def hf_token(rng: random.Random) -> str:
    return "hf_" + "".join(rng.choice(LETTERS) for _ in range(34))


def generic_line(rng: random.Random) -> str:
    return f'api_key = "{"".join(rng.choice(CHARS) for _ in range(40))}"\n'


def write_lines(path: Path, n: int, rng: random.Random, kinds: str) -> None:
    with open(path, "w") as fh:
        for i in range(n):
            kind = kinds[i % len(kinds)]
            fh.write(f"HF_TOKEN={hf_token(rng)}\n" if kind == "h" else generic_line(rng))


def text_block(rng: random.Random, size: int) -> bytes:
    words = ["model", "train", "loss", "epoch", "data", "batch", "the", "of", "weights", "config"]
    out, n = [], 0
    while n < size:
        line = " ".join(rng.choice(words) for _ in range(rng.randint(3, 12))) + f" {rng.randint(0, 10**6)}\n"
        out.append(line)
        n += len(line)
    return "".join(out).encode()


def write_encoded(path: Path, decoded_size: int, rng: random.Random, encode, head: bytes = b"") -> list[str]:
    """About `decoded_size` bytes of text with 8 token lines at random places, encoded a piece
    at a time (pieces of a multiple of 3 bytes, so that base64 pieces join seamlessly)."""
    block = text_block(rng, 3 << 20)
    pieces = max(1, -(-decoded_size // len(block)))
    planted = []
    with open(path, "wb") as fh:
        fh.write(head)
        carry = b""
        for i in range(pieces):
            piece = carry + block
            if i % max(1, pieces // 8) == 0:
                tok = hf_token(rng)
                planted.append(tok)
                cut = piece.index(b"\n", rng.randrange(len(piece) - 200)) + 1
                piece = piece[:cut] + f"HF_TOKEN={tok}\n".encode() + piece[cut:]
            keep = len(piece) - len(piece) % 6
            fh.write(encode(piece[:keep]))
            carry = piece[keep:]
        fh.write(encode(carry))
    return planted


def found(report: Path) -> set[str]:
    return {json.loads(line)["secret"] for line in report.read_text().splitlines() if '"finding"' in line}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-blobs", action="store_true", help="only the line files")
    ap.add_argument("--skip-lines", action="store_true", help="only the encoded blobs")
    ap.add_argument("--base64-mb", type=int, default=200)
    ap.add_argument("--utf16-mb", type=int, default=100)
    args = ap.parse_args()
    rng = random.Random(15)
    work = Path(tempfile.mkdtemp(prefix="leakscan-adversarial-"))
    try:
        print("== many findings in one file: `leakscan scan FILE --no-verify` (table to /dev/null)")
        for name, n, kinds in [] if args.skip_lines else [("hf-5k.env", 5_000, "h"), ("hf-20k.env", 20_000, "h"), ("hf-85k.env", 85_000, "h"),
                               ("generic-85k.py", 85_000, "g"), ("mixed-85k.py", 85_000, "hg")]:  # fmt: skip
            path = work / name
            write_lines(path, n, rng, kinds)
            wc = run(["wc", "-l", str(path)])
            table = leakscan(path)
            jsonl = leakscan(path, "-f", "jsonl", out=work / "r.jsonl")
            hits = sum(1 for _ in open(work / "r.jsonl"))
            print(f"{name:15} {path.stat().st_size / 1e6:5.1f} MB  table {table.wall:6.2f} s (cpu {table.cpu:6.2f} s, "
                  f"{table.rss_mb:4.0f} MB)  jsonl {jsonl.wall:6.2f} s (cpu {jsonl.cpu:6.2f} s)  {hits} findings  "
                  f"wc -l {wc.wall:.3f} s: ratio {table.wall / wc.wall:,.0f}")  # fmt: skip
        if args.skip_blobs:
            return
        print("== tokens hidden by size: decoded as streams vs the raw scan (--no-decode) of the same file")
        (work / "empty.txt").write_bytes(b"")
        print(f"(peak RSS of a scan of an empty file: {leakscan(work / 'empty.txt').rss_mb:.0f} MB)")
        blobs = [
            ("blob.b64", (args.base64_mb << 20) * 3 // 4, base64.b64encode, b""),
            ("blob16.txt", (args.utf16_mb << 20) // 2, lambda b: b.decode().encode("utf-16-le"), b"\xff\xfe"),
        ]
        for name, size, encode, head in blobs:
            path = work / name
            planted = write_encoded(path, size, rng, encode, head)
            started = time.perf_counter()
            with open(path, "rb") as fh:
                while fh.read(1 << 20):
                    pass
            read = time.perf_counter() - started
            decoded = leakscan(path, "-f", "jsonl", out=work / "d.jsonl")
            raw = leakscan(path, "-f", "jsonl", "--no-decode", out=work / "r.jsonl")
            got = found(work / "d.jsonl") & set(planted)
            print(f"{name:12} {path.stat().st_size / 1e6:6.1f} MB  decoded {decoded.wall:6.2f} s (cpu {decoded.cpu:6.2f} s, "
                  f"peak RSS {decoded.rss_mb:4.0f} MB)  raw {raw.wall:6.2f} s ({raw.rss_mb:4.0f} MB): ratio "
                  f"{decoded.wall / raw.wall:.2f}  read {read:.2f} s  tokens found {len(got)}/{len(planted)} "
                  f"(raw scan: {len(found(work / 'r.jsonl') & set(planted))})")  # fmt: skip
            if len(got) != len(planted):
                sys.exit(f"{name}: planted tokens missed")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
