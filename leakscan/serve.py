"""`leakscan serve`: a service receiving Hugging Face webhook deliveries.

`POST /webhooks/hub` checks the shared secret (`X-Webhook-Secret`, compared in constant time),
bounds and validates the payload, records a job in a durable queue (a table in the store's
SQLite database) and answers 202 at once. Worker threads claim jobs under a lease (like the
revocation outbox: inside `BEGIN IMMEDIATE`, `host:pid:nonce`, a dead process's lease taken
over), fetch the repository incrementally into the mirror cache, scan what is new (the store
remembers the ref tips of the last complete scan), verify, queue revocations and record findings
in `findings`, keyed by repository, fingerprint and commit, so a retried job never records one
twice. The store holds no raw secret there: redacted preview and SHA-256 only.

The same delivery twice (same repository, event, head sha and updated refs, or the same
comment) maps to one dedupe key and is scanned once. A job that keeps failing is parked after
`max_attempts`. `GET /healthz`, `GET /metrics` (Prometheus text format).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import re
import signal
import socket
import sqlite3
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from .revoke.outbox import lease_dead
from .store import REPO_FINDINGS_SCHEMA, record_repo_findings

SCHEMA = """
CREATE TABLE IF NOT EXISTS webhook_jobs (
    id INTEGER PRIMARY KEY,
    dedupe TEXT NOT NULL UNIQUE,      -- one job per delivery content (retried deliveries map here)
    repo_type TEXT NOT NULL,
    repo_id TEXT NOT NULL,
    event TEXT NOT NULL,              -- scope.action
    payload TEXT NOT NULL,            -- the parts of the delivery the job needs (no secret)
    state TEXT NOT NULL,              -- pending | running | done | failed (will retry) | parked
    attempts INTEGER NOT NULL DEFAULT 0,
    lease TEXT,
    lease_until REAL,
    not_before REAL NOT NULL DEFAULT 0,
    last_error TEXT,
    findings INTEGER,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    seconds REAL                      -- duration of the successful attempt
);
CREATE INDEX IF NOT EXISTS webhook_jobs_state ON webhook_jobs (state, not_before);
"""

LEASE_SECONDS = 300.0
MAX_BODY = 1 << 20
LATENCY_BUCKETS = (1, 5, 15, 60, 300, 1800)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
TYPES = ("model", "dataset", "space")


class PayloadError(ValueError):
    """Why a delivery is not a Hub webhook payload (answered 400)."""


def connect(path: Path | str) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.executescript(SCHEMA + REPO_FINDINGS_SCHEMA)
    return db


# ---- payloads ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    repo_type: str
    repo_id: str
    event: str
    dedupe: str
    payload: dict[str, Any]
    scan: bool  # false for events with nothing to scan (a deleted repository)


def parse_payload(body: bytes) -> Delivery:
    """Validate a webhook delivery (hub-docs webhooks.md) and derive its dedupe key."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PayloadError(f"body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise PayloadError("body is not a JSON object")
    event = data.get("event")
    if not isinstance(event, dict) or not isinstance(event.get("action"), str) or not isinstance(event.get("scope"), str):
        raise PayloadError("event.action and event.scope must be strings")
    scope, action = event["scope"], event["action"]
    if scope.split(".", 1)[0] not in ("repo", "discussion"):
        raise PayloadError(f"unknown event scope: {scope[:60]!r}")
    repo = data.get("repo")
    if not isinstance(repo, dict) or repo.get("type") not in TYPES:
        raise PayloadError("repo.type must be model, dataset or space")
    name = repo.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise PayloadError("repo.name must be a repository id (namespace/name)")
    head = repo.get("headSha", repo.get("head_sha"))
    if head is not None and (not isinstance(head, str) or not _SHA.match(head)):
        raise PayloadError("repo.headSha must be a commit id")
    refs = data.get("updatedRefs")
    if refs is not None:
        if not isinstance(refs, list) or not all(
            isinstance(r, dict) and isinstance(r.get("ref"), str)
            and all(r.get(k) is None or (isinstance(r.get(k), str) and _SHA.match(r[k])) for k in ("oldSha", "newSha"))
            for r in refs
        ):  # fmt: skip
            raise PayloadError("updatedRefs must be a list of {ref, oldSha, newSha}")
    discussion = data.get("discussion")
    if discussion is not None and (not isinstance(discussion, dict) or not isinstance(discussion.get("num"), int)):
        raise PayloadError("discussion.num must be an integer")
    comment = data.get("comment")
    if comment is not None and not isinstance(comment, dict):
        raise PayloadError("comment must be an object")
    repo_type, repo_id = repo["type"], name
    moved = data.get("movedTo")
    if action == "move" and isinstance(moved, dict) and isinstance(moved.get("name"), str) and _NAME.match(moved["name"]):
        repo_id = moved["name"]  # scan it where it now lives
    # Deliveries are at-least-once: the same content gives the same key. (`webhook.id` names
    # the webhook, not the delivery, so it cannot tell deliveries apart on its own.)
    identity = {
        "repo": f"{repo_type}/{repo_id}", "event": f"{scope}.{action}", "head": head,
        "refs": sorted((r["ref"], r.get("oldSha"), r.get("newSha")) for r in refs or []),
        "discussion": discussion.get("num") if discussion else None,
        "discussion_updated": (discussion or {}).get("updatedAt") or (discussion or {}).get("status"),
        "comment": comment.get("id") if comment else None,
        "comment_text": hashlib.sha256(str(comment.get("content", "")).encode()).hexdigest() if comment else None,
        "config": data.get("updatedConfig"),
    }  # fmt: skip
    dedupe = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()
    keep = {"event": f"{scope}.{action}", "headSha": head, "updatedRefs": refs or [],
            "discussion": discussion.get("num") if discussion else None}  # fmt: skip
    return Delivery(repo_type, repo_id, f"{scope}.{action}", dedupe, keep, scan=not (scope == "repo" and action == "delete"))


# ---- the queue -----------------------------------------------------------------------------


class Queue:
    """Jobs in SQLite: enqueue with a dedupe key, claim under a lease, finish once."""

    def __init__(self, path: Path | str, max_attempts: int = 5) -> None:
        self.db = connect(path)
        self.lock = threading.Lock()
        self.max_attempts = max_attempts
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"

    def close(self) -> None:
        self.db.close()

    def enqueue(self, d: Delivery) -> tuple[int, bool]:
        """(job id, whether it is new). A delivery already queued, running or done is not
        queued again."""
        with self.lock, self.db:
            self.db.execute("BEGIN IMMEDIATE")
            row = self.db.execute("SELECT id FROM webhook_jobs WHERE dedupe=?", (d.dedupe,)).fetchone()
            if row:
                return row[0], False
            cur = self.db.execute(
                "INSERT INTO webhook_jobs (dedupe, repo_type, repo_id, event, payload, state, created_at) "
                "VALUES (?, ?, ?, ?, ?, 'pending', ?)",
                (d.dedupe, d.repo_type, d.repo_id, d.event, json.dumps(d.payload), time.time()))  # fmt: skip
            return cur.lastrowid, True

    def recover(self) -> int:
        """On startup: jobs whose lease is held by a process that is gone go back to pending."""
        with self.lock, self.db:
            self.db.execute("BEGIN IMMEDIATE")
            rows = self.db.execute("SELECT id, lease, lease_until FROM webhook_jobs WHERE state='running'").fetchall()
            dead = [(i,) for i, lease, until in rows if lease is None or until < time.time() or lease_dead(lease)]
            self.db.executemany("UPDATE webhook_jobs SET state='pending', lease=NULL, not_before=0 WHERE id=?", dead)
        return len(dead)

    def claim(self) -> dict[str, Any] | None:
        """One due job, under this process's lease. A repository is scanned by one job at a
        time (they share its mirror), and a job whose lease died or expired is taken over."""
        now = time.time()
        with self.lock, self.db:
            self.db.execute("BEGIN IMMEDIATE")
            running = self.db.execute("SELECT id, repo_type, repo_id, lease, lease_until FROM webhook_jobs "
                                      "WHERE state='running'").fetchall()  # fmt: skip
            busy = set()
            stale = []
            for i, rt, rid, lease, until in running:
                if lease is None or until < now or lease_dead(lease):
                    stale.append(i)
                else:
                    busy.add((rt, rid))
            # a job that killed its process every time is parked, not taken over again and again
            self.db.execute(f"UPDATE webhook_jobs SET state='parked', lease=NULL, last_error=coalesce(last_error, "
                            f"'interrupted (process killed) on every attempt') WHERE id IN ({','.join('?' * len(stale))}) "
                            "AND attempts>=?", (*stale, self.max_attempts))  # fmt: skip
            stale = [i for (i,) in self.db.execute(f"SELECT id FROM webhook_jobs WHERE state='running' AND id IN "
                                                   f"({','.join('?' * len(stale))})", stale)]  # fmt: skip
            candidates = self.db.execute(
                "SELECT id, repo_type, repo_id FROM webhook_jobs WHERE (state IN ('pending', 'failed') AND not_before<=?) "
                f"OR id IN ({','.join('?' * len(stale))}) ORDER BY id", (now, *stale)).fetchall()  # fmt: skip
            job = next((c for c in candidates if (c[1], c[2]) not in busy), None)
            if job is None:
                return None
            self.db.execute("UPDATE webhook_jobs SET state='running', lease=?, lease_until=?, attempts=attempts+1, "
                            "started_at=? WHERE id=?", (self.owner, now + LEASE_SECONDS, now, job[0]))  # fmt: skip
            row = self.db.execute("SELECT id, repo_type, repo_id, event, payload, attempts FROM webhook_jobs WHERE id=?",
                                  (job[0],)).fetchone()  # fmt: skip
        return dict(zip(("id", "repo_type", "repo_id", "event", "payload", "attempts"), row))

    def renew(self) -> None:
        with self.lock, self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("UPDATE webhook_jobs SET lease_until=? WHERE state='running' AND lease=?",
                            (time.time() + LEASE_SECONDS, self.owner))  # fmt: skip

    def done(self, job_id: int, repo: str, findings: list, seconds: float) -> list:
        """Record the findings (once each, whatever the retries) and finish the job, in one
        transaction. Returns the findings new to the store."""
        now = time.time()
        with self.lock, self.db:
            self.db.execute("BEGIN IMMEDIATE")
            new = record_repo_findings(self.db, repo, findings, f"job {job_id}", now)
            self.db.execute("UPDATE webhook_jobs SET state='done', lease=NULL, last_error=NULL, findings=?, "
                            "finished_at=?, seconds=? WHERE id=? AND lease=?",
                            (len(findings), now, seconds, job_id, self.owner))  # fmt: skip
        return new

    def failed(self, job_id: int, attempts: int, error: str) -> str:
        parked = attempts >= self.max_attempts
        state = "parked" if parked else "failed"
        with self.lock, self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("UPDATE webhook_jobs SET state=?, lease=NULL, last_error=?, not_before=?, finished_at=? "
                            "WHERE id=? AND lease=?",
                            (state, error[:500], time.time() + min(600.0, 5.0 * 2 ** (attempts - 1)), time.time(),
                             job_id, self.owner))  # fmt: skip
        return state

    def release_mine(self) -> None:
        """On a clean shutdown: what this process still runs goes back to pending, the
        interrupted attempt not counted."""
        with self.lock, self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("UPDATE webhook_jobs SET state='pending', lease=NULL, attempts=max(attempts-1, 0) "
                            "WHERE state='running' AND lease=?", (self.owner,))  # fmt: skip

    def metrics(self) -> dict[str, Any]:
        with self.lock:
            states = dict(self.db.execute("SELECT state, count(*) FROM webhook_jobs GROUP BY state").fetchall())
            verification = dict(self.db.execute("SELECT verification, count(*) FROM repo_findings GROUP BY verification").fetchall())
            cols = ", ".join(f"sum(seconds <= {b})" for b in LATENCY_BUCKETS)
            row = self.db.execute(f"SELECT count(*), coalesce(sum(seconds), 0), {cols} FROM webhook_jobs "
                                  "WHERE state='done' AND seconds IS NOT NULL").fetchone()  # fmt: skip
        return {"states": states, "verification": verification, "latency": row}


# ---- the service ---------------------------------------------------------------------------


@dataclass
class Config:
    db: Path
    secret: str
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 2
    verify: bool = True
    notify: str | None = None
    max_body: int = MAX_BODY
    max_attempts: int = 5
    max_repo_bytes: int | None = 10240 << 20
    lfs: Any = None  # LfsOptions; None: the defaults
    callbacks: list[dict] = field(default_factory=list)


class Service:
    def __init__(self, config: Config) -> None:
        from .detectors import load_rules

        self.config = config
        self.queue = Queue(config.db, config.max_attempts)
        self.ruleset = load_rules()
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.local = threading.local()
        self.deliveries: dict[str, int] = {}
        self.running = 0
        self.busy_lock = threading.Lock()
        self.threads: list[threading.Thread] = []

    # HTTP

    async def webhook(self, request: web.Request) -> web.Response:
        given = request.headers.get("X-Webhook-Secret", "")
        if not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), self.config.secret.encode()):
            return self._answer("unauthorized", 401, {"error": "missing or wrong X-Webhook-Secret"})
        if request.content_length is not None and request.content_length > self.config.max_body:
            return self._answer("too_large", 413, {"error": f"body larger than {self.config.max_body} bytes"})
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._answer("too_large", 413, {"error": f"body larger than {self.config.max_body} bytes"})
        try:
            delivery = parse_payload(body)
        except PayloadError as exc:
            return self._answer("invalid", 400, {"error": str(exc)})
        if not delivery.scan:
            return self._answer("ignored", 202, {"ignored": f"{delivery.event}: nothing to scan"})
        job, new = await asyncio.get_running_loop().run_in_executor(None, self.queue.enqueue, delivery)
        if new:
            self.wake.set()
        return self._answer("accepted" if new else "duplicate", 202, {"job": job, "duplicate": not new})

    def _answer(self, result: str, status: int, body: dict) -> web.Response:
        self.deliveries[result] = self.deliveries.get(result, 0) + 1
        return web.json_response(body, status=status)

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def metrics(self, request: web.Request) -> web.Response:
        m = await asyncio.get_running_loop().run_in_executor(None, self.queue.metrics)
        states = m["states"]
        lines = [
            "# HELP leakscan_queue_jobs Jobs in the queue by state.", "# TYPE leakscan_queue_jobs gauge",
            *(f'leakscan_queue_jobs{{state="{s}"}} {states.get(s, 0)}' for s in ("pending", "running", "failed", "parked")),
            "# HELP leakscan_queue_depth Jobs waiting or running.", "# TYPE leakscan_queue_depth gauge",
            f"leakscan_queue_depth {sum(states.get(s, 0) for s in ('pending', 'running', 'failed'))}",
            "# HELP leakscan_jobs_done_total Jobs finished.", "# TYPE leakscan_jobs_done_total counter",
            f"leakscan_jobs_done_total {states.get('done', 0)}",
            "# HELP leakscan_jobs_failed_total Jobs parked after failing every attempt.",
            "# TYPE leakscan_jobs_failed_total counter", f"leakscan_jobs_failed_total {states.get('parked', 0)}",
            "# HELP leakscan_workers_busy Workers scanning now (this process).", "# TYPE leakscan_workers_busy gauge",
            f"leakscan_workers_busy {self.running}",
            "# HELP leakscan_scan_seconds Duration of successful scan jobs.", "# TYPE leakscan_scan_seconds histogram",
        ]  # fmt: skip
        count, total, *buckets = m["latency"]
        for b, n in zip(LATENCY_BUCKETS, buckets):
            lines.append(f'leakscan_scan_seconds_bucket{{le="{b}"}} {n or 0}')
        lines += [f'leakscan_scan_seconds_bucket{{le="+Inf"}} {count}', f"leakscan_scan_seconds_sum {total:.3f}",
                  f"leakscan_scan_seconds_count {count}"]  # fmt: skip
        lines += ["# HELP leakscan_findings Findings recorded, by verification state.", "# TYPE leakscan_findings gauge"]
        for state in sorted({"verified", "invalid", "unknown", "unverified"} | set(m["verification"])):
            lines.append(f'leakscan_findings{{verification="{state}"}} {m["verification"].get(state, 0)}')
        lines += ["# HELP leakscan_webhook_deliveries_total Webhook deliveries by outcome (this process).",
                  "# TYPE leakscan_webhook_deliveries_total counter"]  # fmt: skip
        for result in ("accepted", "duplicate", "ignored", "invalid", "too_large", "unauthorized"):
            lines.append(f'leakscan_webhook_deliveries_total{{result="{result}"}} {self.deliveries.get(result, 0)}')
        return web.Response(text="\n".join(lines) + "\n", content_type="text/plain", charset="utf-8",
                            headers={"X-Content-Type-Options": "nosniff"})  # fmt: skip

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.config.max_body)
        app.router.add_post("/webhooks/hub", self.webhook)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/metrics", self.metrics)
        return app

    # workers

    def start_workers(self) -> None:
        for i in range(self.config.workers):
            t = threading.Thread(target=self._work, name=f"leakscan-worker-{i}", daemon=True)
            t.start()
            self.threads.append(t)
        t = threading.Thread(target=self._heartbeat, name="leakscan-lease", daemon=True)
        t.start()

    def _heartbeat(self) -> None:
        while not self.stopping.wait(LEASE_SECONDS / 4):
            try:
                self.queue.renew()
            except sqlite3.Error as exc:
                log(f"cannot renew leases: {exc}")

    def _work(self) -> None:
        while not self.stopping.is_set():
            try:
                job = self.queue.claim()
            except sqlite3.Error as exc:
                log(f"cannot claim a job: {exc}")
                job = None
            if job is None:
                self.wake.wait(1.0)
                self.wake.clear()
                continue
            with self.busy_lock:
                self.running += 1
            try:
                self._run(job)
            finally:
                with self.busy_lock:
                    self.running -= 1

    def _run(self, job: dict[str, Any]) -> None:
        from .pipeline import scan_hub_repo
        from .scan import Scanner
        from .sources.hub import HubRepo, endpoint
        from .store import Store

        label = f"{job['repo_type']}s/{job['repo_id']}" if job["repo_type"] != "model" else job["repo_id"]
        started = time.monotonic()
        try:
            if getattr(self.local, "scanner", None) is None:
                self.local.scanner = Scanner(self.ruleset)
            hub_repo = HubRepo(job["repo_type"], job["repo_id"], endpoint())
            result = scan_hub_repo(hub_repo, self.local.scanner, store_path=self.config.db, verify=self.config.verify,
                                   max_bytes=self.config.max_repo_bytes, lfs=self.config.lfs)  # fmt: skip
            store = Store(self.config.db)
            try:
                if self.config.callbacks:
                    from .revoke.deliver import flush
                    from .revoke.outbox import Outbox

                    outbox = Outbox(store.db)
                    outbox.enqueue(result.findings, self.config.callbacks, hub_repo.web_url)
                    asyncio.run(flush(outbox))
            finally:
                store.close()
            seconds = time.monotonic() - started
            new = self.queue.done(job["id"], hub_repo.label, result.findings, seconds)
        except Exception as exc:  # HubError, git and network failures: retried, then parked
            detail = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
            state = self.queue.failed(job["id"], job["attempts"], detail)
            log(f"job {job['id']} ({label}) attempt {job['attempts']}: {detail} ({state})")
            return
        log(f"job {job['id']} ({label}): {len(result.findings)} findings, {len(new)} new, {seconds:.2f} s")
        if new and self.config.notify:
            self._notify(hub_repo.label, job["id"], new)

    def _notify(self, repo: str, job_id: int, findings: list) -> None:
        """POST the new findings, redacted (best effort: the store has them either way)."""
        body = json.dumps({"repo": repo, "job": job_id, "findings": [f.to_dict(redact=True) for f in findings]}).encode()
        req = urllib.request.Request(self.config.notify, data=body, method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": "leakscan"})  # fmt: skip
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                resp.read()
        except Exception as exc:
            log(f"notification for job {job_id} failed: {type(exc).__name__}: {str(exc)[:120]}")

    async def serve(self) -> None:
        recovered = self.queue.recover()
        if recovered:
            log(f"{recovered} interrupted job{'s' * (recovered != 1)} taken over")
        runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        site = web.TCPSite(runner, self.config.host, self.config.port)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        self.start_workers()
        print(f"leakscan: listening on http://{self.config.host}:{port}/webhooks/hub", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            self.stopping.set()
            self.wake.set()
            await runner.cleanup()
            deadline = time.monotonic() + 5.0
            while self.running and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            self.queue.release_mine()  # what did not finish is retried by the next start
            self.queue.close()
            log("stopped")


def log(message: str) -> None:
    print(f"leakscan: {message}", file=sys.stderr, flush=True)


def run(config: Config) -> None:
    asyncio.run(Service(config).serve())
