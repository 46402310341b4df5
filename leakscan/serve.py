"""`leakscan serve`: a service receiving Hugging Face webhook deliveries.

`POST /webhooks/hub` checks the shared secret (`X-Webhook-Secret`, compared in constant time),
bounds and validates the payload, records a job in the store's jobs queue (kind `webhook`) and
answers 202 at once. Worker threads claim jobs under a lease (a dead process's lease is taken
over; one running job per repository), fetch the repository incrementally into the mirror
cache, scan what is new (the store remembers the ref tips of the last complete scan), verify,
queue revocations and record findings in `repo_findings`, keyed by repository, fingerprint and
commit, in the transaction that finishes the job, so a retried job never records one twice. The
store holds no raw secret there: redacted preview and SHA-256 only.

The same delivery twice (same repository, event, head sha and updated refs, or the same
comment) maps to one dedupe key and is scanned once. A job that keeps failing is retried with
backoff and parked after `max_attempts`. `GET /healthz`, `GET /metrics` (Prometheus text format).

Staying up when clients misbehave: a connection that has not sent a whole request head within
`idle_timeout` of opening (or of its last answer) is closed, a body must arrive within
`body_timeout`; past `max_connections` the oldest idle connection is closed to admit a new one;
nothing is ever inflated (a `Content-Encoding` is refused with 415 before authentication); past
`max_queue` waiting jobs a delivery is answered 503 with Retry-After; any invalid payload is a
400, and aiohttp's complaints about malformed requests are one line each.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import hmac
import json
import logging
import re
import signal
import sqlite3
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from .net import Client
from .store import connect, transaction
from .store.findings import record_repo_findings
from .store.jobs import Job, Queue
from .textsafe import reason, scrub

LEASE_SECONDS = 300.0
MAX_BODY = 1 << 20
MAX_QUEUE = 10_000
IDLE_TIMEOUT = 15.0  # seconds to send a request head, on a new or a kept-alive connection
BODY_TIMEOUT = 30.0
RETRY_AFTER = 60  # seconds, when the queue is full
LATENCY_BUCKETS = (1, 5, 15, 60, 300, 1800)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
TYPES = ("model", "dataset", "space")


class PayloadError(ValueError):
    """Why a delivery is not a Hub webhook payload (answered 400)."""


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
    except RecursionError:
        raise PayloadError("body is not a webhook payload: JSON nested too deeply") from None
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
        "refs": sorted(((r["ref"], r.get("oldSha"), r.get("newSha")) for r in refs or []),
                       key=lambda t: tuple(x or "" for x in t)),  # None and a sha of one ref do not compare
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
    max_queue: int = MAX_QUEUE
    max_connections: int = 0  # 0: from the descriptor limit (default_max_connections)
    idle_timeout: float = IDLE_TIMEOUT
    body_timeout: float = BODY_TIMEOUT
    prepared: Any = None  # config.Prepared: rules, suppressions and scope shared with `scan`


def default_max_connections() -> int:
    """Half of what the descriptor limit leaves after 256 (the loop accepts up to 100 at once
    before room is made, and scans, git and SQLite need their own), at least 16, at most 1,024:
    384 at the common limit of 1,024."""
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return 1024 if soft == resource.RLIM_INFINITY else max(16, min(1024, (soft - 256) // 2))


class Service:
    def __init__(self, config: Config) -> None:
        from .detectors import load_rules

        self.config = config
        self.queue = Queue(connect(config.db, threads=True), "webhook", max_attempts=config.max_attempts,
                           lease=LEASE_SECONDS)  # fmt: skip
        self.suppressions = self.scope = None
        if config.prepared is not None:
            p = config.prepared
            self.ruleset, self.suppressions, self.scope = p.ruleset, p.suppressions, p.scope
        else:
            self.ruleset = load_rules()
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.local = threading.local()
        self.deliveries: dict[str, int] = {}
        self.running = 0
        self.busy_lock = threading.Lock()
        self.threads: list[threading.Thread] = []
        self.in_request: set[web.RequestHandler] = set()  # connections inside a handler now
        self.evicted = 0
        self.out_of_descriptors_logged = -60.0

    def enqueue(self, d: Delivery) -> tuple[int, bool]:
        """(job id, whether it is new): a delivery already queued, running or done is not queued again."""
        return self.queue.enqueue(d.dedupe, {"repo": f"{d.repo_type}/{d.repo_id}", "repo_type": d.repo_type,
                                             "repo_id": d.repo_id, **d.payload})  # fmt: skip

    def depth(self) -> int:
        """Jobs waiting or running: what a full queue is measured by."""
        counts = self.queue.counts()
        return sum(counts.get(s, 0) for s in ("pending", "failed", "running"))

    def stats(self) -> dict[str, Any]:
        count, total, buckets = self.queue.latency(LATENCY_BUCKETS)
        with self.queue.lock:
            verification = dict(self.queue.db.execute("SELECT verification, count(*) FROM repo_findings "
                                                      "GROUP BY verification").fetchall())  # fmt: skip
        return {"states": self.queue.counts(), "verification": verification, "latency": (count, total, *buckets)}

    # HTTP

    async def webhook(self, request: web.Request) -> web.Response:
        # Bodies are never inflated (auto_decompress is off): an encoded one is refused before
        # any other work, so a compressed bomb costs nothing but the bytes sent.
        if request.headers.get("Content-Encoding", "identity").strip().lower() not in ("", "identity"):
            return self._answer("unsupported_encoding", 415, {"error": "Content-Encoding is not accepted: send the JSON uncompressed"},
                                close=True)  # fmt: skip
        given = request.headers.get("X-Webhook-Secret", "")
        if not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), self.config.secret.encode()):
            return self._answer("unauthorized", 401, {"error": "missing or wrong X-Webhook-Secret"})
        if request.content_length is not None and request.content_length > self.config.max_body:
            return self._answer("too_large", 413, {"error": f"body larger than {self.config.max_body} bytes"}, close=True)
        loop = asyncio.get_running_loop()
        if await loop.run_in_executor(None, self.depth) >= self.config.max_queue:
            return self._answer("queue_full", 503, {"error": f"the queue is full ({self.config.max_queue} jobs waiting): "
                                                    f"retry in {RETRY_AFTER} s"},
                                headers={"Retry-After": str(RETRY_AFTER)}, close=True)  # fmt: skip
        try:
            async with asyncio.timeout(self.config.body_timeout):
                body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._answer("too_large", 413, {"error": f"body larger than {self.config.max_body} bytes"}, close=True)
        except TimeoutError:
            return self._answer("body_timeout", 408, {"error": f"the body did not arrive within {self.config.body_timeout:g} s"},
                                close=True)  # fmt: skip
        try:
            delivery = parse_payload(body)
        except PayloadError as exc:
            return self._answer("invalid", 400, {"error": str(exc)})
        except RecursionError:  # the dedupe key's encoding, one level deeper than the parse
            return self._answer("invalid", 400, {"error": "body is not a webhook payload: JSON nested too deeply"})
        if not delivery.scan:
            return self._answer("ignored", 202, {"ignored": f"{delivery.event}: nothing to scan"})
        job, new = await loop.run_in_executor(None, self.enqueue, delivery)
        if new:
            self.wake.set()
        return self._answer("accepted" if new else "duplicate", 202, {"job": job, "duplicate": not new})

    def _answer(self, result: str, status: int, body: dict, *, headers: dict[str, str] | None = None,
                close: bool = False) -> web.Response:  # fmt: skip
        self.deliveries[result] = self.deliveries.get(result, 0) + 1
        response = web.json_response(body, status=status, headers=headers)
        if close:  # what is left of the body is not worth reading
            response.force_close()
        return response

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def metrics(self, request: web.Request) -> web.Response:
        m = await asyncio.get_running_loop().run_in_executor(None, self.stats)
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
        for result in ("accepted", "duplicate", "ignored", "invalid", "too_large", "unauthorized", "unsupported_encoding",
                       "body_timeout", "queue_full"):  # fmt: skip
            lines.append(f'leakscan_webhook_deliveries_total{{result="{result}"}} {self.deliveries.get(result, 0)}')
        lines += ["# HELP leakscan_connections_evicted_total Idle connections closed to admit new ones (this process).",
                  "# TYPE leakscan_connections_evicted_total counter", f"leakscan_connections_evicted_total {self.evicted}"]  # fmt: skip
        return web.Response(text="\n".join(lines) + "\n", content_type="text/plain", charset="utf-8",
                            headers={"X-Content-Type-Options": "nosniff"})  # fmt: skip

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.config.max_body, middlewares=[self._track])
        app.router.add_post("/webhooks/hub", self.webhook)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/metrics", self.metrics)
        return app

    @web.middleware
    async def _track(self, request: web.Request, handler) -> web.StreamResponse:
        """Marks the connection busy while its request is handled: only idle ones are evicted."""
        self.in_request.add(request.protocol)
        try:
            return await handler(request)
        finally:
            self.in_request.discard(request.protocol)

    def _connection(self, server: web.Server) -> web.RequestHandler:
        """The protocol for a new connection, and room made for it once the connections
        accepted before it are set up (the loop accepts in bursts: counting now would miss them)."""
        asyncio.get_running_loop().call_soon(self._make_room, server)
        return server()

    def _make_room(self, server: web.Server) -> None:
        """Past `max_connections`, the oldest idle connections (half-open, a slow request head,
        a kept-alive client) are closed, or the oldest ones if every connection is inside a
        handler: a flood of connections that send nothing cannot lock everyone else out, nor run
        the process out of descriptors."""
        live = _live(server)
        excess = len(live) + 1 - self.config.max_connections  # + the connection being made
        if excess > 0:
            self._close(sorted(live, key=lambda h: h in self.in_request)[:excess])  # stable: oldest first

    def _close(self, victims: list[web.RequestHandler]) -> int:
        for victim in victims:
            victim.force_close()
        self.evicted += len(victims)
        return len(victims)

    def _loop_exception(self, server: web.Server, loop: asyncio.AbstractEventLoop, context: dict) -> None:
        """Out of descriptors, asyncio stops accepting for a second and reports each failed
        accept of the burst with a traceback: here it is one line a minute, and the oldest idle
        connections are closed at once so that the retry finds room."""
        exc = context.get("exception")
        if isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
            live = _live(server)
            closed = self._close([h for h in live if h not in self.in_request][: max(1, len(live) // 2)])
            now = time.monotonic()
            if now - self.out_of_descriptors_logged >= 60:
                self.out_of_descriptors_logged = now
                log(f"descriptor limit reached ({exc.strerror}): new connections wait, {closed} idle ones closed")
            return
        if self.stopping.is_set() and isinstance(exc, (OSError, ValueError)):
            return  # asyncio's delayed accept retry, run on the listener we have just closed
        loop.default_exception_handler(context)

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
                job = next(iter(self.queue.claim(exclusive_by="repo")), None)
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

    def _run(self, job: Job) -> None:
        from .pipeline import scan_hub_repo
        from .scan import Scanner
        from .sources.hub import HubRepo
        from .sources.hubapi import endpoint

        kind, name = job.payload["repo_type"], job.payload["repo_id"]
        label = f"{kind}s/{name}" if kind != "model" else name
        started = time.monotonic()
        try:
            if getattr(self.local, "scanner", None) is None:
                self.local.scanner = Scanner(self.ruleset)
            hub_repo = HubRepo(kind, name, endpoint())
            result = scan_hub_repo(hub_repo, self.local.scanner, store_path=self.config.db, verify=self.config.verify,
                                   max_bytes=self.config.max_repo_bytes, lfs=self.config.lfs,
                                   suppressions=self.suppressions, scope=self.scope)  # fmt: skip
            if self.config.callbacks:
                from .revoke import revoke

                revoke(self.config.db, result.findings, self.config.callbacks, hub_repo.web_url)
            seconds = time.monotonic() - started
            # the findings and the job's end in one transaction: a retried job never records twice
            with self.queue.lock, transaction(self.queue.db):
                new = record_repo_findings(self.queue.db, hub_repo.label, result.findings, f"job {job.id}", time.time())
                self.queue.done(job.id, findings=len(result.findings))
        except Exception as exc:  # HubError, git and network failures: retried, then parked
            detail = reason(exc, [self.config.secret], limit=300)
            retried = self.queue.retry(job.id, detail)
            state = "lease lost" if retried is None else "parked" if retried.state == "parked" else "will retry"
            log(f"job {job.id} ({label}) attempt {job.attempts}: {scrub(detail)} ({state})")
            return
        log(f"job {job.id} ({label}): {len(result.findings)} findings, {len(new)} new, {seconds:.2f} s")
        if new and self.config.notify:
            self._notify(hub_repo.label, job.id, new)

    def _notify(self, repo: str, job_id: int, findings: list) -> None:
        """POST the new findings, redacted (best effort: the store has them either way), through
        the guarded client: --notify is the explicit origin, and a redirect is not followed."""
        body = json.dumps({"repo": repo, "job": job_id, "findings": [f.to_dict(redact=True) for f in findings]}).encode()

        async def post() -> str | None:
            async with Client([self.config.notify]) as client:
                return await client.deliver("POST", self.config.notify, {"Content-Type": "application/json"}, body)

        error = asyncio.run(post())
        if error:
            log(f"notification for job {job_id} failed: {scrub(error, [f.secret for f in findings] + [self.config.secret])[:300]}")

    async def serve(self) -> None:
        recovered = self.queue.recover()
        if recovered:
            log(f"{recovered} interrupted job{'s' * (recovered != 1)} taken over")
        # keepalive_timeout: aiohttp arms it when a connection opens and after each answer, and
        # closes the connection if no whole request head has arrived by then: the header-read and
        # the idle timeout in one. The logger turns each malformed request into one line.
        runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=2.0, keepalive_timeout=self.config.idle_timeout,
                               lingering_time=2.0, auto_decompress=False, logger=_http_logger(self.config.secret))  # fmt: skip
        await runner.setup()
        if not self.config.max_connections:
            self.config.max_connections = default_max_connections()
        loop = asyncio.get_running_loop()
        server = runner.server
        assert server is not None
        loop.set_exception_handler(lambda loop, context: self._loop_exception(server, loop, context))
        listener = await loop.create_server(lambda: self._connection(server), self.config.host, self.config.port,
                                            reuse_address=True)  # fmt: skip
        port = listener.sockets[0].getsockname()[1]
        self.start_workers()
        print(f"leakscan: listening on http://{self.config.host}:{port}/webhooks/hub", flush=True)
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            self.stopping.set()
            self.wake.set()
            listener.close()
            await runner.cleanup()
            deadline = time.monotonic() + 5.0
            while self.running and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            self.queue.release_mine()  # what did not finish is retried by the next start
            self.queue.db.close()
            log("stopped")


def _live(server: web.Server) -> list[web.RequestHandler]:
    """The server's connections that are still open, oldest first."""
    return [h for h in server.connections if h.transport is not None]


def log(message: str) -> None:
    print(f"leakscan: {message}", file=sys.stderr, flush=True)


class _OneLine(logging.Handler):
    """aiohttp's complaints (a malformed request, a failing handler) as one escaped line each,
    no traceback; past `burst` lines a minute the rest are counted, not printed."""

    def __init__(self, secret: str, burst: int = 20) -> None:
        super().__init__(logging.INFO)
        self.secret, self.burst = secret, burst
        self.window, self.lines, self.dropped = 0.0, 0, 0

    def emit(self, record: logging.LogRecord) -> None:
        now = time.monotonic()
        if now - self.window >= 60:
            if self.dropped:
                log(f"{self.dropped} more malformed requests in the last minute (not shown)")
            self.window, self.lines, self.dropped = now, 0, 0
        self.lines += 1
        if self.lines > self.burst:
            self.dropped += 1
            return
        exc = record.exc_info[1] if record.exc_info else None
        detail = f": {type(exc).__name__}: {exc}" if exc is not None else ""
        log(scrub(" ".join(f"http: {record.getMessage()}{detail}".split()), [self.secret])[:300])


def _http_logger(secret: str) -> logging.Logger:
    logger = logging.getLogger("leakscan.serve.http")
    logger.propagate = False
    logger.setLevel(logging.INFO)  # aiohttp logs garbage on a fresh connection at debug: not shown
    logger.handlers[:] = [_OneLine(secret)]
    return logger


def run(config: Config) -> None:
    asyncio.run(Service(config).serve())
