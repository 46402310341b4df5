"""Sweep throughput: a pass over many small repositories on the Hub stand-in, in repositories per
minute, with the local process pool and with Ray, and what a whole-Hub pass would take.

Builds N model repositories on the stand-in (fixtures/hub_standin.py, served on 127.0.0.1), each
of three commits (a README, a config, a training script; every tenth repository a token made
at run time in its history), then times `leakscan sweep run --no-verify --no-discussions` over
them: a first pass (every repository fetched and scanned) and a second one (nothing changed:
listing and bookkeeping only, which the first pass also paid). Scans per minute are N over the
first pass's time; the second pass's time is reported beside it, as the share of the first that
is the listing (the stand-in computes every listed item's sha and date with git). Each executor
gets a fresh store and mirror cache, so neither reuses the other's scan cache; the compiled
detectors come from a cache dir warmed once before (as on any machine after its first scan).

Usage: python benchmarks/bench_sweep.py [--repos 1000] [--workers 2] [--no-ray]
                                        [--hub-repos 3000000] [--machines 1,10,100]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "fixtures"))

from hub_standin import HubStandIn, git_env  # noqa: E402

from leakscan.examples import expand  # noqa: E402

HF = "hf_{alpha:34}"


def build(hub: HubStandIn, n: int, rng: random.Random) -> set[str]:
    """n repositories written with one `git fast-import` each; returns the planted tokens."""
    planted = set()
    for i in range(n):
        rid = f"org{i % 25}/model-{i}"
        path = hub.add_repo("model", rid)
        files = [{"README.md": f"# model {i}\n\nA small model card.\n" * 3},
                 {"config.json": json.dumps({"hidden_size": 64 + i, "layers": i % 12, "vocab": 32000})},
                 {"train.py": f"import torch\nLR = {rng.random():.6f}\nSEED = {i}\n" + "x = 1\n" * 40}]
        if i % 10 == 0:
            tok = expand(HF, rng)[1]
            planted.add(tok)
            files[1]["secrets.env"] = f"HF_TOKEN={tok}\n"
        stream = []
        for c, change in enumerate(files):
            msg = f"commit {c}".encode()
            stream.append(b"commit refs/heads/main\ncommitter T <t@example.org> %d +0000\ndata %d\n%s\n"
                          % (1_700_000_000 + i * 10 + c, len(msg), msg))  # fmt: skip
            for name, text in change.items():
                body = text.encode()
                stream.append(b"M 100644 inline %s\ndata %d\n%s\n" % (name.encode(), len(body), body))
        subprocess.run(["git", "--git-dir", str(path), "fast-import", "--quiet"], input=b"".join(stream),
                       check=True, env=git_env())  # fmt: skip
    return planted


def sweep_pass(hub: HubStandIn, work: Path, workers: int, ray: bool, compiled: Path) -> tuple[float, list[dict]]:
    out = work / "found.jsonl"
    env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HOME": str(work / "hf-home"), "HF_HUB_DISABLE_TELEMETRY": "1",
           "LEAKSCAN_HUB_CACHE": str(work / "mirrors"), "HF_TOKEN": "", "LEAKSCAN_NO_VERIFY": "1",
           "LEAKSCAN_CACHE_DIR": str(compiled)}  # fmt: skip
    argv = [sys.executable, "-m", "leakscan", "sweep", "run", "--db", str(work / "sweep.sqlite3"), "-o", str(out),
            "--no-verify", "--no-discussions", "--workers", str(workers), "--backoff", "0", "--type", "model"]  # fmt: skip
    if ray:
        argv.append("--ray")
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True)
    took = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        raise SystemExit(f"sweep failed ({proc.returncode}): {proc.stderr[-2000:]}")
    lines = [json.loads(l) for l in out.read_text().splitlines()] if out.exists() else []
    return took, lines


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repos", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--no-ray", action="store_true")
    ap.add_argument("--hub-repos", type=int, default=3_000_000, help="repositories on the whole Hub, to extrapolate")
    ap.add_argument("--machines", default="1,10,100")
    args = ap.parse_args()
    rng = random.Random(17)
    with tempfile.TemporaryDirectory(prefix="leakscan-sweepbench-") as tmp, \
            HubStandIn(root=Path(tmp) / "hub", page_size=1000) as hub:  # fmt: skip
        start = time.perf_counter()
        planted = build(hub, args.repos, rng)
        print(f"built {args.repos} repositories ({len(planted)} with a token) in {time.perf_counter() - start:.1f} s", flush=True)
        # The compiled rule set and Hyperscan database, as a sweep machine keeps them in its cache
        # dir: compiling them cold takes each worker seconds, once, which is not per-repository work.
        compiled = Path(tmp) / "compiled"
        (Path(tmp) / "empty").mkdir()
        subprocess.run([sys.executable, "-m", "leakscan", "scan", str(Path(tmp) / "empty"), "--no-verify"],
                       env={**os.environ, "LEAKSCAN_CACHE_DIR": str(compiled)}, capture_output=True, check=True)  # fmt: skip
        rates = {}
        for name, ray in (("local pool", False), ("ray", True)):
            if ray and args.no_ray:
                continue
            work = Path(tmp) / name.replace(" ", "-")
            work.mkdir()
            first, found = sweep_pass(hub, work, args.workers, ray, compiled)
            second, _ = sweep_pass(hub, work, args.workers, ray, compiled)
            got = {f.get("secret") for f in found}
            missed = planted - got
            rates[name] = args.repos / first * 60
            print(f"{name:10}: first pass {first:.1f} s = {rates[name]:.0f} repos/min with {args.workers} workers; "
                  f"unchanged second pass {second:.1f} s (listing and bookkeeping); "
                  f"{len(planted) - len(missed)}/{len(planted)} planted tokens found", flush=True)  # fmt: skip
            if missed:
                print(f"  MISSED {len(missed)} planted tokens")
    print()
    for name, rate in rates.items():
        cells = []
        for m in (int(x) for x in args.machines.split(",")):
            hours = args.hub_repos / (rate * m) / 60
            cells.append(f"{m} machine{'s' * (m != 1)}: {hours:,.1f} h")
        print(f"whole Hub ({args.hub_repos:,} repositories) at the {name} rate: " + "; ".join(cells))
    print("(repositories this small and on a local server; real ones are bigger and fetched over the network,"
          " so these are lower bounds on the time)")


if __name__ == "__main__":
    main()
