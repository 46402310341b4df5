"""`leakscan serve` as a subprocess, receiving webhook deliveries shaped like the Hub's and
scanning repositories of a Hub stand-in (real git smart HTTP, real SQLite queue)."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import queue
import random
import resource
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from aiohttp import web

from helpers import HF, REPO, token
from hubstand import HubStandIn
from standin import RawServer, StandIn, redirecting

SECRET = "webhook-shared-secret"


class SlowHub(HubStandIn):
    """The stand-in, with git requests held back for `git_delay` seconds (a slow fetch)."""

    git_delay = 0.0

    async def _git(self, *args, **kwargs):
        if self.git_delay:
            await asyncio.sleep(self.git_delay)
        return await super()._git(*args, **kwargs)


@pytest.fixture
def hub(tmp_path):
    with SlowHub(root=tmp_path / "hub") as h:
        yield h


class Service:
    """`python -m leakscan serve --port 0` and what the tests ask of it."""

    def __init__(self, hub: HubStandIn, tmp_path: Path, *args: str) -> None:
        self.db = tmp_path / "store.sqlite3"
        self.args = ["--port", "0", "--db", str(self.db), *args]
        self.env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf-home"), "HF_TOKEN": "",
                    "HF_HUB_DISABLE_TELEMETRY": "1", "LEAKSCAN_HUB_CACHE": str(tmp_path / "mirrors"),
                    "LEAKSCAN_NO_VERIFY": "1", "LEAKSCAN_WEBHOOK_SECRET": SECRET}  # fmt: skip
        self.err = tmp_path / "serve.err"
        self.proc: subprocess.Popen | None = None
        self.preexec = None  # run in the child before exec (resource limits)

    def start(self) -> Service:
        self.proc = subprocess.Popen([sys.executable, "-m", "leakscan", "serve", *self.args], cwd=REPO, env=self.env,
                                     stdout=subprocess.PIPE, stderr=open(self.err, "ab"), text=True,
                                     preexec_fn=self.preexec)  # fmt: skip
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: lines.put(self.proc.stdout.readline()), daemon=True).start()
        try:
            line = lines.get(timeout=30)
        except queue.Empty:
            line = ""
        assert line.startswith("leakscan: listening on http://127.0.0.1:"), (line, self.err.read_text())
        self.url = line.split(" on ", 1)[1].strip().removesuffix("/webhooks/hub")
        return self

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(20)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def post(self, payload, secret: str | None = SECRET, raw: bytes | None = None) -> tuple[int, dict]:
        body = raw if raw is not None else json.dumps(payload).encode()
        headers = {"Content-Type": "application/json"} | ({"X-Webhook-Secret": secret} if secret is not None else {})
        req = urllib.request.Request(f"{self.url}/webhooks/hub", data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    def get(self, path: str) -> tuple[int, str, str]:
        with urllib.request.urlopen(f"{self.url}{path}", timeout=10) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read().decode()

    def query(self, sql: str, *params) -> list[tuple]:
        with sqlite3.connect(self.db, timeout=10) as db:
            return db.execute(sql, params).fetchall()

    def wait(self, job: int, states=("done", "parked"), timeout: float = 30) -> tuple:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows = self.query("SELECT state, attempts, last_error FROM jobs WHERE id=? AND kind='webhook'", job)
            if rows and rows[0][0] in states:
                return rows[0]
            time.sleep(0.1)
        raise AssertionError(f"job {job} not {states}: {rows} {self.err.read_text()}")

    def metrics(self) -> dict[str, float]:
        status, ctype, text = self.get("/metrics")
        assert status == 200 and ctype.startswith("text/plain")
        return {k: float(v) for k, v in (line.rsplit(" ", 1) for line in text.splitlines() if not line.startswith("#"))}


def push(repo_id: str, head: str, refs: list[tuple[str, str | None, str | None]] | None = None) -> dict:
    """A repo.content delivery as the Hub sends it (hub-docs webhooks.md)."""
    return {
        "event": {"action": "update", "scope": "repo.content"},
        "repo": {"type": "model", "name": repo_id, "id": "6571c3a7c2b4f3a1d0e5b6c7", "private": False,
                 "headSha": head, "url": {"web": f"https://huggingface.co/{repo_id}",
                                          "api": f"https://huggingface.co/api/models/{repo_id}"},
                 "owner": {"id": "6571c3a7c2b4f3a1d0e5b6c8"}},
        "updatedRefs": [{"ref": r, "oldSha": o, "newSha": n} for r, o, n in refs or [("refs/heads/main", None, head)]],
        "webhook": {"id": "6571c3a7c2b4f3a1d0e5b6c9", "version": 3},
    }  # fmt: skip


def comment_event(repo_id: str, num: int, text: str) -> dict:
    return {
        "event": {"action": "create", "scope": "discussion.comment"},
        "repo": {"type": "model", "name": repo_id, "id": "6571c3a7c2b4f3a1d0e5b6c7", "private": False},
        "discussion": {"id": "6571c3a7c2b4f3a1d0e5b6d0", "num": num, "title": "help", "status": "open",
                       "isPullRequest": False, "author": {"id": "x"}, "url": {"web": "w", "api": "a"}},
        "comment": {"id": "6571c3a7c2b4f3a1d0e5b6d1", "author": {"id": "x"}, "hidden": False, "content": text,
                    "url": {"web": "w"}},
        "webhook": {"id": "6571c3a7c2b4f3a1d0e5b6c9", "version": 3},
    }  # fmt: skip


def no_raw_secret(db: Path, *secrets: str) -> None:
    for f in db.parent.glob(db.name + "*"):
        data = f.read_bytes()
        assert not any(s.encode() in data for s in secrets), f


def test_pushes_and_comments_are_scanned_once_recorded_once_and_notified(hub, tmp_path):
    a, b, c = token(HF, "serve-a"), token(HF, "serve-b"), token(HF, "serve-c")
    notes: list[dict] = []

    async def receive(request: web.Request, body: bytes) -> web.Response:
        notes.append(json.loads(body))
        return web.Response(status=204)

    hub.add_repo("model", "alice/leaky")
    first = hub.commit("model", "alice/leaky", {"train.py": f"login(token='{a}')\n"})
    num = hub.add_discussion("model", "alice/leaky", "help", [f"my token is {c}"])
    with StandIn(receive) as receiver:
        svc = Service(hub, tmp_path, "--notify", f"http://127.0.0.1:{receiver.port}/leaks", "--workers", "2").start()
        try:
            status, ctype, text = svc.get("/healthz")
            assert (status, text) == (200, "ok")
            code, body = svc.post(push("alice/leaky", first))
            assert code == 202 and body["duplicate"] is False
            job = body["job"]
            assert svc.post(push("alice/leaky", first)) == (202, {"job": job, "duplicate": True})  # redelivered
            assert svc.wait(job)[:2] == ("done", 1)
            rows = svc.query("SELECT repo, path, commit_id, source, redacted, secret_sha256, verification FROM repo_findings")
            assert sorted((r[1], r[2], r[3]) for r in rows) == [(f"discussions/{num}", "", "discussion"),
                                                                ("train.py", first, "history")]  # fmt: skip
            assert all(r[0] == "alice/leaky" and r[6] == "unverified" and r[4].startswith("hf_") for r in rows)

            # a comment: the discussions are read again, nothing is recorded twice
            code, body = svc.post(comment_event("alice/leaky", num, f"my token is {c}"))
            assert code == 202 and svc.wait(body["job"])[0] == "done"
            # a second push: only the new commit is scanned, one new finding
            second = hub.commit("model", "alice/leaky", {"eval.py": f"HF_TOKEN = '{b}'\n"})
            code, body = svc.post(push("alice/leaky", second, [("refs/heads/main", first, second)]))
            assert code == 202 and svc.wait(body["job"])[0] == "done"
            assert svc.query("SELECT count(*) FROM repo_findings") == [(3,)]
            assert svc.query("SELECT path, commit_id FROM repo_findings WHERE path='eval.py'") == [("eval.py", second)]
            # and the findings page lists them, each once, open
            assert svc.query("SELECT path, status FROM findings ORDER BY path") == [
                (f"discussions/{num}", "open"), ("eval.py", "open"), ("train.py", "open")]
            assert svc.query("SELECT count(*) FROM jobs WHERE kind='webhook'") == [(3,)]

            m = svc.metrics()
            assert m['leakscan_jobs_done_total'] == 3 and m['leakscan_queue_jobs{state="pending"}'] == 0
            assert m['leakscan_queue_jobs{state="running"}'] == 0 and m["leakscan_jobs_failed_total"] == 0
            assert m['leakscan_findings{verification="unverified"}'] == 3
            assert m["leakscan_scan_seconds_count"] == 3 and m['leakscan_scan_seconds_bucket{le="+Inf"}'] == 3
            assert m['leakscan_webhook_deliveries_total{result="duplicate"}'] == 1
            assert svc.stop() == 0  # SIGTERM: a clean exit
        finally:
            if svc.proc.poll() is None:
                svc.kill()
    # notified of new findings only, redacted
    assert [sorted(f["path"] for f in n["findings"]) for n in notes] == [[f"discussions/{num}", "train.py"], ["eval.py"]]
    assert all(f["secret"] is None for n in notes for f in n["findings"])
    assert not any(s in json.dumps(notes) for s in (a, b, c))
    no_raw_secret(svc.db, a, b, c)


def test_bad_deliveries_are_refused_and_failing_jobs_parked(hub, tmp_path):
    svc = Service(hub, tmp_path, "--max-attempts", "1", "--max-body", "4096").start()
    try:
        good = push("bob/m", "a" * 40)
        assert svc.post(good, secret="wrong")[0] == 401
        assert svc.post(good, secret=None)[0] == 401
        assert svc.post(None, raw=json.dumps({**good, "pad": "x" * 5000}).encode())[0] == 413
        code, body = svc.post(None, raw=b'{"event": ')
        assert code == 400 and "not JSON" in body["error"]
        for broken, reason in [
            ({**good, "event": {"scope": "repo.content"}}, "event.action"),
            ({**good, "repo": {**good["repo"], "type": "car"}}, "repo.type"),
            ({**good, "repo": {**good["repo"], "name": "../../etc"}}, "repo.name"),
            ({**good, "updatedRefs": [{"ref": "refs/heads/main", "newSha": "nope"}]}, "updatedRefs"),
            ({**good, "discussion": {"num": "1"}}, "discussion.num"),
        ]:
            code, body = svc.post(broken)
            assert code == 400 and reason in body["error"], body
        assert svc.query("SELECT count(*) FROM jobs WHERE kind='webhook'") == [(0,)]
        # a repository the Hub does not know: the job fails and, after --max-attempts, is parked
        code, body = svc.post(good)
        assert code == 202
        state, attempts, error = svc.wait(body["job"])
        assert (state, attempts) == ("parked", 1) and "repository not found" in error
        m = svc.metrics()
        assert m["leakscan_jobs_failed_total"] == 1 and m['leakscan_webhook_deliveries_total{result="unauthorized"}'] == 2
        assert m['leakscan_webhook_deliveries_total{result="too_large"}'] == 1
        assert m['leakscan_webhook_deliveries_total{result="invalid"}'] == 6
    finally:
        assert svc.stop() == 0


def test_a_job_interrupted_by_kill_9_completes_after_a_restart_recorded_once(hub, tmp_path):
    secret = token(HF, "serve-kill")
    hub.add_repo("model", "carol/slow")
    head = hub.commit("model", "carol/slow", {"app.py": f"TOKEN = '{secret}'\n"})
    hub.git_delay = 30.0  # the fetch hangs: the job is running when the service dies
    svc = Service(hub, tmp_path).start()
    code, body = svc.post(push("carol/slow", head))
    assert code == 202
    job = body["job"]
    svc.wait(job, states=("running",))
    time.sleep(0.5)
    svc.kill()
    assert svc.query("SELECT state, attempts FROM jobs WHERE id=?", job) == [("running", 1)]
    hub.git_delay = 0.0
    svc.start()  # a new process: the dead one's lease is taken over
    try:
        assert svc.post(push("carol/slow", head)) == (202, {"job": job, "duplicate": True})
        assert svc.wait(job)[:2] == ("done", 2)
        assert svc.query("SELECT path, commit_id FROM repo_findings") == [("app.py", head)]
        assert svc.metrics()['leakscan_findings{verification="unverified"}'] == 1
        assert "interrupted job taken over" in svc.err.read_text()
    finally:
        assert svc.stop() == 0
    no_raw_secret(svc.db, secret)


# ---- staying up ------------------------------------------------------------------------------


def raw_connection(svc: Service, data: bytes = b"") -> socket.socket:
    host, port = svc.url.removeprefix("http://").split(":")
    conn = socket.create_connection((host, int(port)), timeout=10)
    if data:
        conn.sendall(data)
    return conn


def read_answer(conn: socket.socket) -> bytes:
    """Everything the service sends until it closes the connection (a reset too: closing with
    unread bytes in its buffer, the kernel resets)."""
    out = b""
    try:
        while chunk := conn.recv(65536):
            out += chunk
    except ConnectionResetError:
        pass
    return out


def test_past_the_descriptor_limit_half_open_connections_are_evicted_and_healthz_answers(hub, tmp_path):
    """1,100 half-open connections against a 1,024 descriptor limit, scaled down: 300 against
    256. The default connection limit (16 at 256 descriptors) holds, the oldest idle ones go."""
    svc = Service(hub, tmp_path)
    svc.preexec = lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
    svc.start()
    conns = []
    try:
        # connections that never finish a request head: nothing at all, or half of one
        for i in range(300):
            conns.append(raw_connection(svc, b"" if i % 2 else b"POST /webhooks/hub HTTP/1.1\r\nHost: x\r\nContent-Le"))
        status, _, text = svc.get("/healthz")  # urllib's own 10 s timeout: it must not wait for them
        assert (status, text) == (200, "ok")
        assert svc.metrics()["leakscan_connections_evicted_total"] >= 300 - 16
        assert read_answer(conns[0]) == b""  # the oldest was closed, without an answer
    finally:
        for conn in conns:
            conn.close()
        assert svc.stop() == 0
    assert "Traceback" not in svc.err.read_text() and "out of system resource" not in svc.err.read_text()


def test_out_of_descriptors_the_service_closes_idle_connections_and_says_so_in_one_line(hub, tmp_path):
    """A descriptor limit so low that a burst of accepts runs out before room is made: asyncio
    would print a traceback per failed accept; the service closes idle connections instead,
    logs one line, and answers once its listener retries."""
    svc = Service(hub, tmp_path)
    svc.preexec = lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
    svc.start()
    conns = []
    try:
        for _ in range(150):
            conns.append(raw_connection(svc, b""))
        status, _, text = svc.get("/healthz")
        assert (status, text) == (200, "ok")
    finally:
        for conn in conns:
            conn.close()
        assert svc.stop() == 0
    err = svc.err.read_text()
    assert "Traceback" not in err and "socket.accept()" not in err, err
    assert err.count("descriptor limit reached (Too many open files): new connections wait") == 1, err


def test_a_connection_without_a_whole_request_head_is_closed_after_the_idle_timeout(hub, tmp_path):
    svc = Service(hub, tmp_path, "--idle-timeout", "1").start()
    try:
        silent = raw_connection(svc)
        half = raw_connection(svc, b"POST /webhooks/hub HTTP/1.1\r\nHost: x\r\nX-Webhook-Se")
        kept = raw_connection(svc, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")  # then idle, kept alive
        for conn in (silent, half, kept):
            conn.settimeout(30)
        assert read_answer(silent) == b"" and read_answer(half) == b""
        answer = read_answer(kept)
        assert answer.startswith(b"HTTP/1.1 200 OK") and answer.endswith(b"\r\n\r\nok")
        assert svc.get("/healthz")[2] == "ok"
    finally:
        assert svc.stop() == 0


def test_a_compressed_body_is_refused_before_authentication_and_never_inflated(hub, tmp_path):
    svc = Service(hub, tmp_path).start()
    bomb = gzip.compress(b"\0" * (64 << 20))  # 64 MiB of zeros, 64 KiB on the wire
    streams = []
    try:
        # four unauthenticated gzip bodies arriving slowly, chunked, never finished
        for _ in range(4):
            conn = raw_connection(svc, b"POST /webhooks/hub HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                       b"Content-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n")  # fmt: skip
            conn.sendall(b"%x\r\n%s\r\n" % (len(bomb[:16384]), bomb[:16384]))
            streams.append(conn)
        assert svc.get("/healthz")[2] == "ok"
        for conn in streams:
            answer = read_answer(conn)  # the answer comes, and the connection closes, mid-body
            assert answer.startswith(b"HTTP/1.1 415 ") and b"Content-Encoding is not accepted" in answer, answer
        # with the secret too: still refused, nothing queued
        conn = raw_connection(svc, b"POST /webhooks/hub HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\n"
                                   b"X-Webhook-Secret: " + SECRET.encode() + b"\r\nContent-Length: %d\r\n\r\n" % len(bomb) + bomb)  # fmt: skip
        assert read_answer(conn).startswith(b"HTTP/1.1 415 ")
        assert svc.query("SELECT count(*) FROM jobs WHERE kind='webhook'") == [(0,)]
        assert svc.metrics()['leakscan_webhook_deliveries_total{result="unsupported_encoding"}'] == 5
    finally:
        for conn in streams:
            conn.close()
        assert svc.stop() == 0


def test_invalid_payloads_are_400_and_garbage_is_one_line_without_a_traceback(hub, tmp_path):
    svc = Service(hub, tmp_path, "--max-body", str(1 << 20)).start()
    try:
        for depth in (1_000, 5_000, 100_000):
            code, body = svc.post(None, raw=b"[" * depth + b"]" * depth)
            assert code == 400 and body["error"] in ("body is not a webhook payload: JSON nested too deeply",
                                                     "body is not a JSON object"), (depth, body)  # fmt: skip
        deep = json.dumps({**push("bob/m", "a" * 40), "updatedConfig": 1})[:-1] + ', "x": ' + "[" * 990 + "]" * 990 + "}"
        assert svc.post(None, raw=deep.encode())[0] in (202, 400)
        # one ref with no old sha and the same ref with one: was a TypeError (500) in the dedupe key
        mixed = push("bob/m", "a" * 40, [("refs/heads/main", None, "a" * 40), ("refs/heads/main", "b" * 40, None)])
        assert svc.post(mixed)[0] == 202
        # a good request, then garbage on the same kept-alive connection: 200, then 400 and closed
        conn = raw_connection(svc, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        first = b""
        while not first.endswith(b"\r\n\r\nok"):
            first += conn.recv(4096)
        assert first.startswith(b"HTTP/1.1 200 OK")
        conn.sendall(b"\x16\x03\x01garbage\x1b[2J\r\n\r\n")
        assert read_answer(conn).startswith(b"HTTP/1.0 400 Bad Request")
    finally:
        assert svc.stop() == 0
    log = svc.err.read_text()
    assert "Traceback" not in log and "\x1b" not in log
    bad = [line for line in log.splitlines() if line.startswith("leakscan: http: ")]
    assert len(bad) == 1 and "Error handling request" in bad[0], log


def test_a_full_queue_answers_503_with_retry_after(hub, tmp_path):
    svc = Service(hub, tmp_path, "--max-queue", "2").start()
    try:
        # repositories the Hub does not know: the jobs fail and wait for their retry (still queued)
        assert [svc.post(push(f"bob/m{i}", "a" * 40))[0] for i in range(2)] == [202, 202]
        req = urllib.request.Request(f"{svc.url}/webhooks/hub", data=json.dumps(push("bob/m3", "a" * 40)).encode(),
                                     headers={"X-Webhook-Secret": SECRET}, method="POST")  # fmt: skip
        with pytest.raises(urllib.error.HTTPError) as full:
            urllib.request.urlopen(req, timeout=10)
        assert full.value.code == 503 and full.value.headers["Retry-After"] == "60"
        assert json.loads(full.value.read()) == {"error": "the queue is full (2 jobs waiting): retry in 60 s"}
        assert svc.query("SELECT count(*) FROM jobs WHERE kind='webhook'") == [(2,)]
        assert svc.metrics()['leakscan_webhook_deliveries_total{result="queue_full"}'] == 1
    finally:
        assert svc.stop() == 0


def test_a_body_that_does_not_arrive_in_time_is_408(hub, tmp_path):
    svc = Service(hub, tmp_path, "--body-timeout", "1").start()
    try:
        conn = raw_connection(svc, b"POST /webhooks/hub HTTP/1.1\r\nHost: x\r\nX-Webhook-Secret: " + SECRET.encode()
                                   + b"\r\nContent-Length: 1000\r\n\r\n{\"event\": ")  # fmt: skip
        conn.settimeout(30)
        answer = read_answer(conn)
        assert answer.startswith(b"HTTP/1.1 408 ") and b"did not arrive within 1 s" in answer
    finally:
        assert svc.stop() == 0


@pytest.mark.parametrize("secret", ["", "   \t"])
def test_an_empty_or_blank_secret_is_refused_at_start(hub, tmp_path, secret):
    env = {**Service(hub, tmp_path).env, "LEAKSCAN_WEBHOOK_SECRET": secret}
    proc = subprocess.run([sys.executable, "-m", "leakscan", "serve", "--port", "0", "--db", str(tmp_path / "db")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("leakscan: error: set the webhook secret in LEAKSCAN_WEBHOOK_SECRET")
    assert proc.stderr.count("\n") == 1


# ---- notifications -------------------------------------------------------------------------


def test_a_notification_redirected_elsewhere_is_not_followed_and_the_failure_is_logged(hub, tmp_path):
    secret = token(HF, "serve-redirect")
    hub.add_repo("model", "dave/leaky")
    head = hub.commit("model", "dave/leaky", {"app.py": f"TOKEN = '{secret}'\n"})
    with redirecting() as (receiver, other):
        svc = Service(hub, tmp_path, "--notify", f"{receiver.url}/leaks").start()
        try:
            code, body = svc.post(push("dave/leaky", head))
            assert code == 202 and svc.wait(body["job"])[0] == "done"
            wanted = f"leakscan: notification for job {body['job']} failed: HTTP 302 (a redirect: not followed)"
            deadline = time.monotonic() + 30
            while wanted not in svc.err.read_text() and time.monotonic() < deadline:
                time.sleep(0.1)
            assert wanted in svc.err.read_text()
        finally:
            assert svc.stop() == 0
    assert [r.path for r in receiver.requests] == ["/leaks"]
    assert other.requests == []


def test_a_token_in_the_url_stays_out_of_notifications_when_verification_gets_malformed_http(hub, tmp_path):
    from leakscan.detectors import load_rules
    from leakscan.examples import expand

    rule = load_rules().by_id["telegram-bot-token"]
    text, secret = expand(rule.examples.positive[0], random.Random("serve-telegram"))
    hub.add_repo("model", "erin/bot")
    head = hub.commit("model", "erin/bot", {"bot.env": f"{text}\n"})
    notes: list[bytes] = []

    async def receive(request, body):
        notes.append(body)
        return web.Response(status=204)

    echo = lambda head: b"\x00 " + head.split(b"\r\n", 1)[0] + b"\r\n\r\n"  # noqa: E731
    with RawServer(echo) as telegram, StandIn(receive) as receiver:
        svc = Service(hub, tmp_path, "--notify", receiver.url)
        svc.env.update({"LEAKSCAN_NO_VERIFY": "0", "LEAKSCAN_ENDPOINT_TELEGRAM": telegram.url})
        svc.start()
        try:
            code, body = svc.post(push("erin/bot", head))
            assert code == 202 and svc.wait(body["job"])[0] == "done"
            deadline = time.monotonic() + 30
            while not notes and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            assert svc.stop() == 0
    assert any(secret.encode() in h for h in telegram.heads)  # it was asked, with the token in the URL
    (note,) = [json.loads(n) for n in notes]
    (finding,) = note["findings"]
    assert finding["verification"] == "unknown"
    assert finding["verification_reason"] == ("malformed HTTP answer: Bad status line: Expected HTTP/, RTSP/ or ICE/: "
                                              "b'\\x00 GET /bot[secret]/getMe HTTP/1.1' ^ after 3 attempts")  # fmt: skip
    shown = b"".join(notes).decode() + svc.err.read_text()
    assert not [secret[i : i + 10] for i in range(len(secret) - 9) if secret[i : i + 10] in shown]
