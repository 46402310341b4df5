"""The store: one SQLite database, versioned (a wave-1 file migrated in place, a newer one refused
untouched), private files whatever the umask, and the one jobs queue every surface uses."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from contextlib import closing
from pathlib import Path

import pytest

from helpers import HF, REPO, leakscan, token
from standin import StandIn
from test_revoke import SECRET, Receiver, free_port

from leakscan.store import connect, transaction
from leakscan.store.db import VERSION
from leakscan.store.jobs import Queue

# The tables wave 1 created, each module its own (store.py, serve.py, sweep.py, revoke/outbox.py),
# copied as they were: a store written then must open as it is.
WAVE1_DDL = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE object_scans (oid BLOB NOT NULL, detectors TEXT NOT NULL, findings INTEGER NOT NULL,
    PRIMARY KEY (oid, detectors)) WITHOUT ROWID;
CREATE TABLE repo_scans (repo TEXT NOT NULL, detectors TEXT NOT NULL, tips TEXT NOT NULL,
    scanned_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')), PRIMARY KEY (repo, detectors));
CREATE TABLE finding_objects (repo TEXT NOT NULL, detectors TEXT NOT NULL, oid TEXT NOT NULL, path TEXT NOT NULL,
    source TEXT NOT NULL, PRIMARY KEY (repo, detectors, oid, source));
CREATE TABLE verdicts (key TEXT PRIMARY KEY, state TEXT NOT NULL, reason TEXT, identity TEXT NOT NULL,
    restricted INTEGER NOT NULL, checked_at REAL NOT NULL);
CREATE TABLE attributions (repo TEXT NOT NULL, oid TEXT NOT NULL, path TEXT NOT NULL, commit_id TEXT NOT NULL,
    author TEXT NOT NULL, date TEXT NOT NULL, PRIMARY KEY (repo, oid, path));
CREATE TABLE repo_findings (repo TEXT NOT NULL, fingerprint TEXT NOT NULL, commit_id TEXT NOT NULL,
    detector TEXT NOT NULL, provider TEXT NOT NULL, redacted TEXT NOT NULL, secret_sha256 TEXT NOT NULL,
    path TEXT NOT NULL, line INTEGER, source TEXT NOT NULL, container TEXT, url TEXT, verification TEXT NOT NULL,
    origin TEXT NOT NULL, first_seen REAL NOT NULL, last_seen REAL NOT NULL, PRIMARY KEY (repo, fingerprint, commit_id));
CREATE TABLE webhook_jobs (id INTEGER PRIMARY KEY, dedupe TEXT NOT NULL UNIQUE, repo_type TEXT NOT NULL,
    repo_id TEXT NOT NULL, event TEXT NOT NULL, payload TEXT NOT NULL, state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, lease TEXT, lease_until REAL, not_before REAL NOT NULL DEFAULT 0,
    last_error TEXT, findings INTEGER, created_at REAL NOT NULL, started_at REAL, finished_at REAL, seconds REAL);
CREATE INDEX webhook_jobs_state ON webhook_jobs (state, not_before);
CREATE TABLE sweep_repos (repo_type TEXT NOT NULL, repo_id TEXT NOT NULL, sha TEXT, last_modified TEXT,
    scanned_sha TEXT, scanned_modified TEXT, status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    not_before REAL NOT NULL DEFAULT 0, last_error TEXT, findings INTEGER, seconds REAL, listed_pass INTEGER,
    scanned_at REAL, PRIMARY KEY (repo_type, repo_id));
CREATE INDEX sweep_repos_status ON sweep_repos (status);
CREATE TABLE sweep_passes (id INTEGER PRIMARY KEY, pid INTEGER NOT NULL, started_at REAL NOT NULL, finished_at REAL,
    listed INTEGER NOT NULL DEFAULT 0, unchanged INTEGER NOT NULL DEFAULT 0, scanned INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0, parked INTEGER NOT NULL DEFAULT 0, findings INTEGER NOT NULL DEFAULT 0,
    new_findings INTEGER NOT NULL DEFAULT 0);
CREATE TABLE sweep_scans (repo TEXT NOT NULL, sha TEXT, pass_id INTEGER NOT NULL, worker TEXT, seconds REAL NOT NULL,
    findings INTEGER NOT NULL, finished_at REAL NOT NULL);
CREATE TABLE leaks (id TEXT PRIMARY KEY, token TEXT, provider TEXT NOT NULL, item TEXT NOT NULL,
    redacted TEXT NOT NULL, created_at REAL NOT NULL);
CREATE TABLE deliveries (leak_id TEXT NOT NULL REFERENCES leaks(id), callback TEXT NOT NULL, state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, lease TEXT, lease_until REAL, last_error TEXT, delivered_at REAL,
    PRIMARY KEY (leak_id, callback));
"""


def mode(p: Path) -> int:
    return p.stat().st_mode & 0o777


def holders(root: Path, *secrets: str) -> list[str]:
    """Every file under `root` holding one of the secrets' bytes."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.is_file() and any(s.encode() in p.read_bytes() for s in secrets))  # fmt: skip


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def wave1_store(path: Path, pending_token: str, hook: str) -> None:
    """A wave-1 store as serve, sweep and the outbox left it: done, failing, parked and running
    jobs, a pending revocation holding its raw token and a delivered one."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(WAVE1_DDL)
    db.execute("INSERT INTO meta VALUES ('schema', '1')")
    db.execute("INSERT INTO object_scans VALUES (?, 'rules-1', 2)", (bytes.fromhex("ab" * 20),))
    db.execute("INSERT INTO repo_findings VALUES ('alice/leaky', 'fp1', 'c1', 'hf', 'huggingface', 'hf_…', 'sha', "
               "'train.py', 1, 'history', NULL, NULL, 'unverified', 'job 1', 1, 1)")  # fmt: skip
    dead = f"{os.uname().nodename}:{dead_pid()}:0bad"
    jobs = [(1, "d1", "model", "alice/leaky", "done", 1, None, None, 0, None, 2, 100.0, 101.5),
            (2, "d2", "dataset", "bob/data", "failed", 2, None, None, time.time() + 50, "the Hub answered HTTP 500", None, 200.0, 201.0),
            (3, "d3", "model", "carol/slow", "running", 1, dead, time.time() + 200, 0, None, None, 300.0, None)]  # fmt: skip
    for i, dedupe, rt, rid, state, attempts, lease, until, not_before, error, findings, started, finished in jobs:
        db.execute("INSERT INTO webhook_jobs VALUES (?, ?, ?, ?, 'repo.content.update', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (i, dedupe, rt, rid, json.dumps({"event": "repo.content.update", "headSha": None, "updatedRefs": [],
                                                    "discussion": None}),
                    state, attempts, lease, until, not_before, error, findings, started - 1, started, finished,
                    finished - started if finished else None))  # fmt: skip
    for rt, rid, status, attempts, error in [("model", "org/a", "done", 0, None), ("dataset", "org/b", "failed", 1, "HTTP 500"),
                                             ("space", "org/c", "parked", 3, "HTTP 500"), ("model", "org/d", "pending", 0, None)]:  # fmt: skip
        scanned = ("s-old", "m-old") if status == "done" else (None, None)
        db.execute("INSERT INTO sweep_repos VALUES (?, ?, 's-new', 'm-new', ?, ?, ?, ?, 0, ?, 1, 0.5, 1, 10.0)",
                   (rt, rid, *scanned, status, attempts, error))  # fmt: skip
    db.execute("INSERT INTO sweep_passes (id, pid, started_at, finished_at) VALUES (1, 1, 1, 2)")
    db.execute("INSERT INTO sweep_scans VALUES ('org/a', 's-old', 1, 'h:1', 0.5, 1, 2)")
    callback = json.dumps({"type": "webhook", "url": hook}, sort_keys=True)
    item = {"type": "acme-key", "url": "f0.py", "source": "file", "repo": "/r", "path": "f0.py", "commit": None,
            "verified_at": "2026-01-01T00:00:00Z"}  # fmt: skip
    db.execute("INSERT INTO leaks VALUES ('leak-pending', ?, 'acme', ?, 'acme_…', 1)",
               (pending_token, json.dumps({**item, "id": "leak-pending"})))  # fmt: skip
    db.execute("INSERT INTO leaks VALUES ('leak-done', NULL, 'acme', ?, 'acme_…', 1)", (json.dumps({**item, "id": "leak-done"}),))
    db.execute("INSERT INTO deliveries VALUES ('leak-pending', ?, 'pending', 3, NULL, NULL, 'HTTP 503', NULL)", (callback,))
    db.execute("INSERT INTO deliveries VALUES ('leak-done', ?, 'delivered', 1, NULL, NULL, NULL, 5.0)", (callback,))
    db.close()
    path.chmod(0o644)  # as wave 1 created it


def test_a_wave1_store_is_migrated_in_place_and_its_pending_revocation_still_delivered(tmp_path):
    pending = token("acme_{b62:24}", "wave1-pending")
    port = free_port()
    db = tmp_path / "old.sqlite3"
    wave1_store(db, pending, f"http://127.0.0.1:{port}/revoke")

    listing = leakscan("revoke", "list", "--db", db, "-f", "json")  # the first leakscan to open it migrates it
    assert listing.code == 0, listing.err
    assert [(r["id"], r["state"], r["last_error"]) for r in json.loads(listing.out)] == [
        ("leak-pending", "pending", "HTTP 503"), ("leak-done", "delivered", None)]  # fmt: skip
    assert pending not in listing.out

    with closing(sqlite3.connect(db)) as c:
        assert c.execute("PRAGMA user_version").fetchone() == (VERSION,)
        assert c.execute("SELECT value FROM meta").fetchall() == [(str(VERSION),)]  # what wave 1 reads, and refuses
        assert c.execute("SELECT kind, key, state, attempts, last_error FROM jobs ORDER BY kind, key").fetchall() == [
            ("revoke", f"leak-done {json.dumps({'type': 'webhook', 'url': f'http://127.0.0.1:{port}/revoke'})}", "done", 0, None),
            ("revoke", f"leak-pending {json.dumps({'type': 'webhook', 'url': f'http://127.0.0.1:{port}/revoke'})}", "pending", 0, "HTTP 503"),
            ("sweep", "datasets/org/b", "pending", 1, "HTTP 500"),
            ("sweep", "org/a", "done", 0, None),
            ("sweep", "org/d", "pending", 0, None),
            ("sweep", "spaces/org/c", "parked", 3, "HTTP 500"),
            ("webhook", "d1", "done", 1, None),
            ("webhook", "d2", "pending", 2, "the Hub answered HTTP 500"),
            ("webhook", "d3", "running", 1, None),
        ]  # fmt: skip
        assert json.loads(c.execute("SELECT payload FROM jobs WHERE key='org/a'").fetchone()[0]) == {
            "repo_type": "model", "repo_id": "org/a", "sha": "s-old", "modified": "m-old"}  # what its scan saw  # fmt: skip
        assert json.loads(c.execute("SELECT payload FROM jobs WHERE key='d2'").fetchone()[0])["repo"] == "dataset/bob/data"
        assert c.execute("SELECT count(*) FROM repo_findings").fetchone() == (1,)
        assert c.execute("SELECT count(*) FROM object_scans").fetchone() == (1,)
        assert c.execute("SELECT repo, sha FROM sweep_scans").fetchall() == [("org/a", "s-old")]
        tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert not tables & {"webhook_jobs", "deliveries"}
        assert "status" not in {r[1] for r in c.execute("PRAGMA table_info(sweep_repos)")}
        assert "token" not in {r[1] for r in c.execute("PRAGMA table_info(leaks)")}
    assert mode(db) == 0o600
    assert holders(tmp_path, pending) == ["old.sqlite3.tokens"]  # out of the store, into the tokens file

    status = leakscan("sweep", "status", "--db", db, "-f", "json")
    info = json.loads(status.out)
    assert info["counts"] == {"pending": 1, "done": 1, "failed": 1, "parked": 1}
    assert [(f["repo"], f["status"], f["attempts"]) for f in info["failing"]] == [("spaces/org/c", "parked", 3),
                                                                                 ("datasets/org/b", "failed", 1)]  # fmt: skip
    webhook = Queue(connect(db), "webhook")
    assert webhook.recover() == 1  # the job wave 1 was running when its process died
    assert [j.key for j in webhook.claim(5)] == ["d3"]  # d2 waits out its backoff
    webhook.db.close()

    receiver = Receiver()
    with StandIn(receiver, port=port):
        flush = leakscan("revoke", "flush", "--db", db, env={"LEAKSCAN_REVOKE_SECRET": SECRET})
    assert flush.code == 0 and flush.out.strip() == "1 delivered, 0 failed, 0 pending", flush.out + flush.err
    assert receiver.acked == Counter({pending: 1})
    assert holders(tmp_path, pending) == []


def test_a_store_from_a_newer_leakscan_or_another_program_is_refused_untouched(tmp_path):
    newer = tmp_path / "newer.sqlite3"
    connect(newer).close()
    with closing(sqlite3.connect(newer)) as c:
        c.execute(f"PRAGMA user_version={VERSION + 1}")
    before = newer.read_bytes()
    (tmp_path / "src").mkdir()
    for args in (["scan", tmp_path / "src"], ["revoke", "list"], ["revoke", "flush"], ["sweep", "status"]):
        run = leakscan(*args, "--db", newer)
        assert (run.code, run.out, run.err) == (
            2, "", f"leakscan: error: {newer}: written by a newer leakscan (store version {VERSION + 1}, this one reads up to {VERSION})\n")  # fmt: skip
    assert newer.read_bytes() == before

    other = tmp_path / "other.sqlite3"
    with closing(sqlite3.connect(other)) as c:
        c.execute("CREATE TABLE notes (t TEXT)")
        c.commit()
    other.chmod(0o640)  # its owner's choice
    run = leakscan("scan", tmp_path / "src", "--db", other)
    assert (run.code, run.err) == (2, f"leakscan: error: {other}: not a leakscan store\n")
    with closing(sqlite3.connect(other)) as c:
        assert c.execute("SELECT name FROM sqlite_master").fetchall() == [("notes",)]
    assert mode(other) == 0o640


def test_files_are_private_whatever_the_umask(tmp_path):
    secret = token(HF, "private-report")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.py").write_text(f"HF_TOKEN = '{secret}'\n")
    report = tmp_path / "report.json"
    report.write_text("old")
    report.chmod(0o644)
    db = tmp_path / "cache" / "deeper" / "s.sqlite3"
    old = os.umask(0o022)
    try:
        run = leakscan("scan", tmp_path / "src", "--db", db, "-f", "json", "-o", report)
        fresh = leakscan("scan", tmp_path / "src", "--no-cache", "-f", "json", "-o", tmp_path / "fresh.json")
        held = connect(db)  # while a connection is open, its -wal and -shm exist
        try:
            held.execute("INSERT INTO verdicts VALUES ('k', 'invalid', NULL, '{}', 0, 0)")
            sides = {p.name: mode(p) for p in db.parent.iterdir()}
        finally:
            held.close()
    finally:
        os.umask(old)
    assert run.code == 1 and fresh.code == 1, run.err
    assert secret in report.read_text()
    assert (mode(report), mode(tmp_path / "fresh.json")) == (0o600, 0o600)
    assert (mode(tmp_path / "cache"), mode(db.parent)) == (0o700, 0o700)
    assert sides == {"s.sqlite3": 0o600, "s.sqlite3-wal": 0o600, "s.sqlite3-shm": 0o600}


# ---- the jobs queue -------------------------------------------------------------------------------


@pytest.fixture
def db(tmp_path):
    conn = connect(tmp_path / "q.sqlite3")
    yield conn
    conn.close()


def test_enqueue_dedupes_retry_backs_off_then_parks_and_a_new_payload_starts_over(db):
    q = Queue(db, "t", max_attempts=2, backoff=30.0)
    job_id, new = q.enqueue("k", {"v": 1})
    assert new and q.enqueue("k", {"v": 2}) == (job_id, False)  # a redelivery: nothing new
    assert Queue(db, "other").enqueue("k", {"v": 1})[1]  # keys are per kind
    (job,) = q.claim(5)
    assert (job.id, job.payload, job.state, job.attempts) == (job_id, {"v": 1}, "running", 1)
    assert q.claim(5) == []
    retried = q.retry(job.id, "GET https://hub.example/api/x?key=abc failed: s3cr3t-value", ["s3cr3t-value"])
    assert (retried.state, retried.attempts) == ("pending", 1)
    assert retried.last_error == "GET https://hub.example/… failed: [secret]"
    assert retried.not_before - retried.finished_at == pytest.approx(30.0, abs=1e-3)
    assert q.claim() == [] and q.counts()["failed"] == 1  # not due yet
    (job,) = q.claim(due_only=False)  # a flush the user asked for does not wait
    retried = q.retry(job.id, "again")
    assert (retried.state, retried.attempts, retried.last_error) == ("parked", 2, "again")
    assert q.claim(due_only=False) == []
    assert q.counts() == {"pending": 0, "running": 0, "done": 0, "failed": 0, "parked": 1}
    assert q.enqueue("k", {"v": 1}, replace=True) == (job_id, False)  # the same sha: still parked
    assert q.enqueue("k", {"v": 3}, replace=True) == (job_id, True)  # a new one: from scratch
    (job,) = q.claim()
    assert (job.payload, job.attempts) == ({"v": 3}, 1)


def test_exclusive_claims_done_inside_the_callers_transaction_and_release(db):
    q, other = Queue(db, "t"), Queue(db, "t")
    for key, repo in (("k1", "a"), ("k2", "a"), ("k3", "b")):
        q.enqueue(key, {"repo": repo})
    assert [j.key for j in q.claim(3, exclusive_by="repo")] == ["k1", "k3"]  # one running job per repository
    assert other.claim(3, exclusive_by="repo") == []
    k1 = q.get("k1")
    with pytest.raises(RuntimeError):
        with transaction(db):
            db.execute("INSERT INTO verdicts VALUES ('recorded', 'invalid', NULL, '{}', 0, 0)")
            assert q.done(k1.id, findings=2)
            raise RuntimeError("the process fails before its commit")
    assert q.get("k1").state == "running"  # neither the record nor the end
    assert db.execute("SELECT count(*) FROM verdicts").fetchone() == (0,)
    assert not other.done(k1.id)  # not its lease
    with transaction(db):
        db.execute("INSERT INTO verdicts VALUES ('recorded', 'invalid', NULL, '{}', 0, 0)")
        assert q.done(k1.id, findings=2)
    assert q.get("k1").state == "done"
    assert db.execute("SELECT result FROM jobs WHERE key='k1'").fetchone() == ('{"findings": 2}',)
    assert [j.key for j in other.claim(3, exclusive_by="repo")] == ["k2"]
    assert other.release_mine() == 1  # a clean shutdown: back to pending, the attempt not counted
    assert (q.get("k2").state, q.get("k2").attempts) == ("pending", 0)
    assert q.counts() == {"pending": 1, "running": 1, "done": 1, "failed": 0, "parked": 0}


def test_an_expired_lease_is_taken_over_even_from_a_live_process(db):
    short = Queue(db, "t", lease=-1.0)  # a lease that ran out: its holder stopped renewing it
    short.enqueue("k", {})
    short.claim()
    (job,) = Queue(db, "t").claim()
    assert (job.key, job.attempts) == ("k", 2)


CLAIM = """
import sys, time
from leakscan.store import connect
from leakscan.store.jobs import Queue
job = Queue(connect(sys.argv[1]), "t", max_attempts=2).claim()
print(job[0].id if job else "none", flush=True)
time.sleep(120)
"""


def claim_in_a_process(path: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-c", CLAIM, str(path)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})  # fmt: skip
    return proc, proc.stdout.readline().strip()


def test_kill_9_leases_are_taken_over_and_a_job_that_dies_every_time_is_parked(db, tmp_path):
    q = Queue(db, "t", max_attempts=2)
    job_id, _ = q.enqueue("k", {})
    first, got = claim_in_a_process(tmp_path / "q.sqlite3")
    try:
        assert got == str(job_id)
        assert q.claim() == [] and q.recover() == 0  # its holder is alive
    finally:
        first.kill()
        first.wait()
    second, got = claim_in_a_process(tmp_path / "q.sqlite3")  # the dead holder's job, taken over
    try:
        assert got == str(job_id) and q.get("k").attempts == 2
    finally:
        second.kill()
        second.wait()
    assert q.recover() == 0 and q.claim() == []
    parked = q.get("k")
    assert (parked.state, parked.attempts, parked.last_error) == ("parked", 2, "interrupted (process killed) on every attempt")


READ = "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); print(c.execute('SELECT count(*) FROM verdicts').fetchone()[0]); c.close()"


def test_opening_the_store_again_in_a_process_keeps_its_other_connections_visible(tmp_path):
    """POSIX locks are per process: had connect() opened and closed a descriptor of the file, the
    process's other connections would lose theirs, another process would take itself for the last
    one, checkpoint and delete the WAL, and later commits would vanish into the deleted file."""
    path = tmp_path / "s.sqlite3"
    held = connect(path)
    try:
        held.execute("INSERT INTO verdicts VALUES ('one', 'invalid', NULL, '{}', 0, 0)")
        connect(path).close()

        def count_elsewhere() -> str:  # another process opens, reads and closes
            return subprocess.run([sys.executable, "-c", READ, str(path)], capture_output=True, text=True,
                                  check=True).stdout.strip()  # fmt: skip

        assert count_elsewhere() == "1"
        held.execute("INSERT INTO verdicts VALUES ('two', 'invalid', NULL, '{}', 0, 0)")
        assert count_elsewhere() == "2"
    finally:
        held.close()


def test_a_lease_whose_process_id_was_reused_is_dead():
    """A killed worker's process id may be taken by another process before its jobs are looked
    at again: the lease names the process by id and start time."""
    import socket

    from leakscan.store import jobs

    host, pid = socket.gethostname(), os.getpid()
    started = jobs._started(pid)
    assert started is not None and started.isdigit()
    assert not jobs.lease_dead(f"{host}:{pid}:{started}:0a1b2c3d")  # this very process
    assert jobs.lease_dead(f"{host}:{pid}:{int(started) + 1}:0a1b2c3d")  # its id, another process
    assert not jobs.lease_dead(f"{host}:{pid}:0a1b2c3d")  # a lease of the form before: by id alone
    assert not jobs.lease_dead(f"elsewhere:{pid}:{int(started) + 1}:0a1b2c3d")  # another host's: never judged here
    assert f"{host}:{pid}:{started}:" in Queue(sqlite3.connect(":memory:"), "k").owner
