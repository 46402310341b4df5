"""`leakscan sweep` against the Hub stand-in: a few dozen repositories over several listing
pages, secrets at HEAD, only in history and only in PR refs; incremental second passes, a pass
killed with SIGKILL and resumed, the same pass on Ray, and the lock."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from helpers import GHP, HF, OPENAI, leakscan, token
from hubstand import HubStandIn

N_MODELS, N_DATASETS, N_SPACES = 14, 8, 6


def build(hub: HubStandIn) -> dict[tuple[str, str], str]:
    """Repositories of every type, over several listing pages; returns {(repo label, secret): where}."""
    planted: dict[tuple[str, str], str] = {}
    kinds = [("model", "", N_MODELS), ("dataset", "datasets/", N_DATASETS), ("space", "spaces/", N_SPACES)]
    for kind, prefix, n in kinds:
        for i in range(n):
            rid = f"org{i % 3}/{kind}-{i}"
            name = f"{prefix}{rid}"
            hub.add_repo(kind, rid)
            hub.commit(kind, rid, {"README.md": f"# {rid}\n"})
            where = i % 4
            if where == 0:  # at HEAD
                t = token(HF, f"head-{kind}-{i}")
                hub.commit(kind, rid, {"config.py": f"HF_TOKEN = '{t}'\n"})
                planted[(name, t)] = "head"
            elif where == 1:  # only in history
                t = token(GHP, f"hist-{kind}-{i}")
                hub.commit(kind, rid, {"train.py": f"gh = '{t}'\n"})
                hub.commit(kind, rid, {"train.py": "gh = os.environ['GH']\n"}, message="remove")
                planted[(name, t)] = "history"
            elif where == 2:  # only in a pull request ref
                t = token(OPENAI, f"pr-{kind}-{i}")
                hub.commit(kind, rid, {"app.py": f"OPENAI_API_KEY = '{t}'\n"}, ref="refs/pr/1", message="PR")
                planted[(name, t)] = "pr"
            # where == 3: clean
    return planted


@pytest.fixture
def hub(tmp_path):
    with HubStandIn(root=tmp_path / "hub", page_size=5) as h:
        h.planted = build(h)
        yield h


def env(hub, tmp_path, cache: str = "mirrors") -> dict:
    return {"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf-home"), "HF_HUB_DISABLE_TELEMETRY": "1",
            "LEAKSCAN_HUB_CACHE": str(tmp_path / cache), "HF_TOKEN": "", "LEAKSCAN_NO_VERIFY": "1"}  # fmt: skip


def args(db, out, *extra) -> list[str]:
    return ["sweep", "run", "--db", str(db), "-o", str(out), "--no-verify", "--workers", "2", "--backoff", "0", *map(str, extra)]


def lines(path) -> list[dict]:
    return [json.loads(l) for l in path.read_text().splitlines()] if path.exists() else []


def rows(db, sql, *params) -> list[tuple]:
    with sqlite3.connect(db) as c:
        return c.execute(sql, params).fetchall()


TOTAL = N_MODELS + N_DATASETS + N_SPACES


def test_full_pass_then_only_what_changed(hub, tmp_path):
    db, out = tmp_path / "state.sqlite3", tmp_path / "findings.jsonl"
    e = env(hub, tmp_path)
    first = leakscan(*args(db, out), env=e)
    assert first.code == 1, first.err
    got = [(f["repo"], f["secret"]) for f in lines(out)]
    assert sorted(got) == sorted(hub.planted), first.err  # every planted secret, each once
    assert (out.stat().st_mode & 0o777, db.stat().st_mode & 0o777) == (0o600, 0o600)  # raw secrets, findings
    kinds = {f["secret"]: f for f in lines(out)}
    assert any(not f["in_head"] for f in kinds.values())  # history-only ones were found as such
    assert rows(db, "SELECT state, count(*) FROM jobs WHERE kind='sweep' GROUP BY state") == [("done", TOTAL)]
    assert len(rows(db, "SELECT * FROM sweep_scans")) == TOTAL
    assert f"{TOTAL}" in first.err and "sweep pass 1" in first.err

    # nothing changed: nothing cloned or scanned, nothing new written
    git_before = sum(1 for r in hub.requests if "git-upload-pack" in r.path)
    again = leakscan(*args(db, out), env=e)
    assert again.code == 0, again.err
    assert sum(1 for r in hub.requests if "git-upload-pack" in r.path) == git_before
    assert rows(db, "SELECT count(*) FROM sweep_scans WHERE pass_id=2") == [(0,)]
    assert len(lines(out)) == len(hub.planted)

    # one repository gains a commit: only it is scanned; only its new secret is written
    fresh = token(HF, "fresh")
    hub.commit("dataset", "org1/dataset-1", {"notes.txt": f"token {fresh}\n"})
    third = leakscan(*args(db, out), env=e)
    assert third.code == 1, third.err
    assert rows(db, "SELECT repo FROM sweep_scans WHERE pass_id=3") == [("datasets/org1/dataset-1",)]
    assert [(f["repo"], f["secret"]) for f in lines(out)[len(hub.planted):]] == [("datasets/org1/dataset-1", fresh)]

    status = leakscan("sweep", "status", "--db", db, "-f", "json", env=e)
    info = json.loads(status.out)
    assert info["counts"]["done"] == TOTAL and info["last_pass"]["scanned"] == 1 and info["passes"] == 3
    assert info["findings"] == len(hub.planted) + 1 and len(info["slowest"]) == 5
    table = leakscan("sweep", "status", "--db", db, env=e)
    assert table.code == 0 and "slowest repositories" in table.out


def test_killed_pass_resumes_without_rescanning(hub, tmp_path):
    db, out = tmp_path / "state.sqlite3", tmp_path / "findings.jsonl"
    e = {**os.environ, **env(hub, tmp_path)}
    cmd = [sys.executable, "-m", "leakscan", *args(db, out)[:-4], "--workers", "1", "--backoff", "0"]
    proc = subprocess.Popen(cmd, env=e, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 60
    done = 0
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            done = rows(db, "SELECT count(*) FROM sweep_scans")[0][0]
        except sqlite3.Error:
            done = 0
        if done >= 6:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the pass ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = rows(db, "SELECT count(*) FROM sweep_scans")[0][0]
    assert 6 <= before < TOTAL

    rerun = leakscan(*args(db, out), env=env(hub, tmp_path))
    assert rerun.code in (0, 1), rerun.err
    scans = rows(db, "SELECT repo, sha FROM sweep_scans")
    unfinished = rows(db, "SELECT key, state, attempts, last_error FROM jobs WHERE state != 'done'")
    assert len(scans) == TOTAL and len(set(scans)) == TOTAL, (unfinished, rerun.err[-3000:])  # nothing lost, nothing twice
    assert rows(db, "SELECT count(*) FROM sweep_scans WHERE pass_id=2")[0][0] == TOTAL - before
    assert sorted((f["repo"], f["secret"]) for f in lines(out)) == sorted(hub.planted)


def test_ray_gives_identical_findings(hub, tmp_path):
    pytest.importorskip("ray")
    local_db, local_out = tmp_path / "local.sqlite3", tmp_path / "local.jsonl"
    ray_db, ray_out = tmp_path / "ray.sqlite3", tmp_path / "ray.jsonl"
    local = leakscan(*args(local_db, local_out), env=env(hub, tmp_path, "mirrors-local"))
    on_ray = leakscan(*args(ray_db, ray_out, "--ray"), env=env(hub, tmp_path, "mirrors-ray"), timeout=180)
    assert local.code == 1 and on_ray.code == 1, on_ray.err

    def key(f):
        return (f["repo"], f["fingerprint"], f["commit"] or "", f["secret"], f["path"])

    assert sorted(map(key, lines(ray_out))) == sorted(map(key, lines(local_out)))
    assert sorted((f["repo"], f["secret"]) for f in lines(ray_out)) == sorted(hub.planted)
    assert len(rows(ray_db, "SELECT * FROM sweep_scans")) == TOTAL


def test_lock_filters_and_parking(hub, tmp_path):
    from leakscan.sweep import SweepLock

    db, out = tmp_path / "state.sqlite3", tmp_path / "findings.jsonl"
    e = env(hub, tmp_path)
    with SweepLock(db):
        refused = leakscan(*args(db, out), env=e)
    assert refused.code == 2 and refused.err.startswith("leakscan: error: another sweep is running on")
    assert len(refused.err.strip().splitlines()) == 1 and f"pid {os.getpid()}" in refused.err

    for _ in range(2):  # the repository's info fails on both attempts: parked, the rest goes on
        hub.fail_next("/api/models/org0/model-3", 500)
    run = leakscan(*args(db, out, "--type", "model", "--author", "org0", "--max-attempts", "2"), env=e)
    assert run.code == 1, run.err
    expected = {k for k in hub.planted if k[0].startswith("org0/model-")}
    assert {(f["repo"], f["secret"]) for f in lines(out)} == expected
    assert rows(db, "SELECT state, attempts FROM jobs WHERE kind='sweep' AND key='org0/model-3'") == [("parked", 2)]
    assert rows(db, "SELECT count(*) FROM jobs WHERE kind='sweep' AND state='done'")[0][0] == len([i for i in range(N_MODELS) if i % 3 == 0]) - 1
    assert "parked" in run.err
    status = json.loads(leakscan("sweep", "status", "--db", db, "-f", "json", env=e).out)
    assert status["counts"]["parked"] == 1 and status["failing"][0]["repo"] == "org0/model-3"
    assert "HTTP 500" in status["failing"][0]["error"]

    bad = leakscan("sweep", "run", "--db", db, "--every", "soon", "--no-verify", env=e)
    assert bad.code == 2 and "--every: not a duration" in bad.err


def test_every_runs_passes_and_a_second_sweep_is_refused(hub, tmp_path):
    db, out = tmp_path / "state.sqlite3", tmp_path / "findings.jsonl"
    e = env(hub, tmp_path)
    cmd = [sys.executable, "-m", "leakscan", *args(db, out, "--type", "space", "--every", "1s")]
    proc = subprocess.Popen(cmd, env={**os.environ, **e}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 40
        passes = 0
        while time.monotonic() < deadline and passes < 2:
            try:
                passes = rows(db, "SELECT count(*) FROM sweep_passes WHERE finished_at IS NOT NULL")[0][0]
            except sqlite3.Error:
                pass
            time.sleep(0.05)
        assert passes >= 2 and proc.poll() is None
        refused = leakscan(*args(db, out), env=e)
        assert refused.code == 2 and refused.err == f"leakscan: error: another sweep is running on state.sqlite3 (pid {proc.pid})\n"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert rows(db, "SELECT count(*) FROM sweep_scans")[0][0] == N_SPACES  # later passes found nothing new to scan
    assert sorted((f["repo"], f["secret"]) for f in lines(out)) == sorted(k for k in hub.planted if k[0].startswith("spaces/"))
    after = leakscan(*args(db, out, "--type", "space"), env=e)  # the lock died with it
    assert after.code == 0, after.err


def _descendants(pid: int) -> dict[int, int]:
    """pid → parent pid, for every process below `pid`."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    parents[int(entry)] = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                pass
    below, todo = {}, [pid]
    while todo:
        p = todo.pop()
        for child, parent in parents.items():
            if parent == p and child not in below:
                below[child] = p
                todo.append(child)
    return below


def test_a_killed_worker_process_loses_nothing(hub, tmp_path):
    """SIGKILL one local worker mid-pass: its repositories are retried and the pass completes."""
    db, out = tmp_path / "state.sqlite3", tmp_path / "findings.jsonl"
    e = {**os.environ, **env(hub, tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "leakscan", *args(db, out)], env=e, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)  # fmt: skip
    killed = None
    deadline = time.monotonic() + 60
    while killed is None and time.monotonic() < deadline and proc.poll() is None:
        try:
            done = rows(db, "SELECT count(*) FROM sweep_scans")[0][0]
        except sqlite3.Error:
            done = 0
        tree = _descendants(proc.pid)
        # the driver's child is the forkserver; the pool's workers are the forkserver's children
        workers = [p for p, parent in tree.items() if parent != proc.pid and tree.get(parent) == proc.pid]
        if done >= 2 and workers:
            killed = workers[0]
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.02)
    assert killed is not None, "no worker to kill before the pass ended"
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1, stderr.decode()[-2000:]
    assert sorted((f["repo"], f["secret"]) for f in lines(out)) == sorted(hub.planted)
    assert rows(db, "SELECT count(*) FROM jobs WHERE kind='sweep' AND state='done'")[0][0] == TOTAL
