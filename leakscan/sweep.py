"""`leakscan sweep`: scan the public Hub (or a slice of it) pass after pass, rescanning only what
changed since the last pass and resuming where a killed pass stopped.

A pass lists models, datasets and Spaces through huggingface_hub (every page, most recently
modified first, each item with its `sha` and `lastModified`), records them in `sweep_repos` in
the store, and queues a job (the store's jobs queue, kind `sweep`) for each repository whose
(sha, lastModified) differs from the one its last successful scan saw. Scans run in a local
process pool or as Ray tasks — the same worker function, `scan_one` — and return their findings;
the driver alone claims jobs and writes the sweep state, the findings table (keyed by repository,
fingerprint and commit: no raw secret at rest), the JSONL output and the revocation outbox.
Workers only share the caches (blob scan cache and verification verdicts, both keyed by content).

A job is done in the same transaction that records its findings, so a pass killed at any moment
and run again continues with what is not done (the dead driver's leases are taken over) and never
records a scan twice. A failing repository is retried with exponential backoff, then parked with
its error until its sha changes. One sweep at a time per database: a POSIX lock on
`<db>.sweep.lock`.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .store import connect, transaction
from .store.db import make_dirs, open_private
from .store.findings import record_repo_findings, recorded
from .store.jobs import Job, Queue

TYPES = ("model", "dataset", "space")
LEASE_SECONDS = 300.0
_EVERY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")


class SweepError(Exception):
    """One line for the user (exit 2)."""


def parse_every(text: str) -> float:
    """'1h', '30m', '90s', '2d' or plain seconds."""
    m = _EVERY.match(text or "")
    if not m or float(m[1]) <= 0:
        raise SweepError(f"--every: not a duration: {text!r} (e.g. 90s, 30m, 1h, 1d)")
    return float(m[1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m[2] or "s"]


@dataclass
class Options:
    db: Path
    types: tuple[str, ...] = TYPES
    author: str | None = None
    search: str | None = None
    limit: int | None = None
    workers: int = 4
    ray: bool = False
    ray_address: str | None = None
    in_flight: int | None = None  # default: 2 × workers
    max_attempts: int = 3
    backoff: float = 5.0  # seconds before the first retry, doubled each time
    verify: bool = True
    discussions: bool = True
    max_repo_bytes: int = 10240 << 20
    lfs: Any = None  # LfsOptions; None: the defaults
    output: Path | None = None
    redact: bool = False
    callbacks: list[dict] = field(default_factory=list)
    progress: Callable[[int], Any] | None = None  # a display for a pass of N scans: advance(report), stop()
    settings: Any = None  # config.Settings: rules, suppressions and scope shared with `scan`


# ---- the lock -------------------------------------------------------------------------------


class SweepLock:
    """A POSIX record lock on `<db>.sweep.lock`: released when the process dies, whatever the
    signal, and not inherited by forked workers."""

    def __init__(self, db: Path) -> None:
        self.path = Path(f"{db}.sweep.lock")
        self.fd: int | None = None

    def acquire(self) -> None:
        make_dirs(self.path.parent)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise SweepError(f"another sweep is running on {self.path.name.removesuffix('.sweep.lock')} (pid {holder})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> SweepLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


# ---- state ----------------------------------------------------------------------------------


def label(repo_type: str, repo_id: str) -> str:
    return {"model": "", "dataset": "datasets/", "space": "spaces/"}[repo_type] + repo_id


@dataclass
class Listed:
    repo_type: str
    repo_id: str
    sha: str | None
    last_modified: str | None


def enumerate_hub(endpoint: str, types: tuple[str, ...], author: str | None, search: str | None,
                  limit: int | None) -> Iterator[Listed]:  # fmt: skip
    """Every matching repository of each type, most recently modified first, all pages (the
    client follows the Link headers and backs off on 429 with Retry-After)."""
    from .sources.hubapi import api

    hf = api(endpoint)
    listers = {"model": hf.list_models, "dataset": hf.list_datasets, "space": hf.list_spaces}
    for kind in types:
        for info in listers[kind](author=author, search=search, limit=limit, sort="last_modified",
                                  expand=["sha", "lastModified"]):  # fmt: skip
            modified = getattr(info, "last_modified", None) or getattr(info, "lastModified", None)
            stamp = modified.isoformat() if hasattr(modified, "isoformat") else (str(modified) if modified else None)
            yield Listed(kind, info.id, getattr(info, "sha", None), stamp)


def _resolve_sha(endpoint: str, item: Listed) -> None:
    """The listing had no sha: ask repo_info (None for an empty or unreachable repository)."""
    from .sources.hub import HubError, HubRepo, repo_info

    try:
        info = repo_info(HubRepo(item.repo_type, item.repo_id, endpoint))
    except HubError:
        return
    item.sha = getattr(info, "sha", None)
    if item.last_modified is None and getattr(info, "last_modified", None) is not None:
        item.last_modified = info.last_modified.isoformat()


# ---- the worker: one repository, in a pool process or a Ray task -------------------------------

_SCANNER = None
_PREPARED = None  # the worker's config.Prepared, when the sweep was given settings


def scan_one(task: dict[str, Any]) -> dict[str, Any]:
    """Fetch one repository into the mirror cache and scan what is new. Never raises for a
    repository's own failure: the error goes back to the driver, which retries or parks."""
    global _SCANNER, _PREPARED
    import socket

    from .pipeline import scan_hub_repo
    from .sources.hub import HubRepo

    started = time.monotonic()
    if task.get("hub_cache"):
        os.environ["LEAKSCAN_HUB_CACHE"] = task["hub_cache"]
    out: dict[str, Any] = {"key": (task["repo_type"], task["repo_id"]), "job": task["job"], "sha": task["sha"],
                           "modified": task["modified"], "worker": f"{socket.gethostname()}:{os.getpid()}"}  # fmt: skip
    try:
        if _SCANNER is None:
            from .detectors import load_rules
            from .scan import Scanner

            if task.get("settings") is not None:
                from .config import prepare

                _PREPARED = prepare(task["settings"])
            _SCANNER = Scanner(_PREPARED.ruleset if _PREPARED else load_rules())
        repo = HubRepo(task["repo_type"], task["repo_id"], task["endpoint"])
        result = scan_hub_repo(repo, _SCANNER, store_path=task.get("cache_db"), verify=bool(task.get("verify")),
                               discussions=task.get("discussions", True), max_bytes=task.get("max_bytes"),
                               lfs=task.get("lfs"), suppressions=_PREPARED.suppressions if _PREPARED else None,
                               scope=_PREPARED.scope if _PREPARED else None)  # fmt: skip
        out["findings"] = result.findings
        out["warnings"] = [s.reason for s in result.skipped if s.path == "discussions"]
    except Exception as exc:  # HubError, git and network failures
        detail = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        out["error"] = detail
    out["seconds"] = time.monotonic() - started
    return out


# ---- executors: the same worker function locally or on Ray -----------------------------------


class LocalExecutor:
    """Local worker processes (the scanner's rules load once per process)."""

    def __init__(self, workers: int) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # forkserver, not fork: workers must not inherit the driver's SQLite connection or lock
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["leakscan.sweep", "leakscan.pipeline"])
        self.workers = workers
        self._make = lambda: ProcessPoolExecutor(workers, mp_context=ctx)
        self.pool = self._make()
        self.running: dict[Any, dict] = {}

    def submit(self, task: dict) -> None:
        self.running[self.pool.submit(scan_one, task)] = task

    def wait(self, timeout: float | None) -> list[dict]:
        from concurrent.futures import FIRST_COMPLETED
        from concurrent.futures import wait as wait_futures
        from concurrent.futures.process import BrokenProcessPool

        if not self.running:
            return []
        done, _ = wait_futures(list(self.running), timeout=timeout, return_when=FIRST_COMPLETED)
        results, broken = [], False
        for fut in done:
            task = self.running.pop(fut)
            try:
                results.append(fut.result())
            except BrokenProcessPool:
                broken = True
                results.append(_lost(task, "worker process died"))
            except Exception as exc:
                results.append(_lost(task, f"{type(exc).__name__}: {exc}"))
        if broken:  # a killed worker breaks the whole pool: every repository in it is retried
            for fut, task in list(self.running.items()):
                results.append(_lost(task, "worker process died"))
            self.running.clear()
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = self._make()
        return results

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


class RayExecutor:
    """Each repository a Ray task; a task whose worker dies is retried by Ray (max_retries)."""

    def __init__(self, workers: int, address: str | None) -> None:
        try:
            import ray
        except ImportError:
            raise SweepError("--ray needs Ray: pip install 'leakscan[ray]'") from None
        self.ray = ray
        if not ray.is_initialized():
            if address:
                ray.init(address=address, log_to_driver=False, configure_logging=False)
            else:
                ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, configure_logging=False)
        self.remote = ray.remote(max_retries=3, retry_exceptions=False)(scan_one)
        self.running: dict[Any, dict] = {}

    def submit(self, task: dict) -> None:
        self.running[self.remote.remote(task)] = task

    def wait(self, timeout: float | None) -> list[dict]:
        if not self.running:
            return []
        ready, _ = self.ray.wait(list(self.running), num_returns=1, timeout=timeout)
        results = []
        for ref in ready:
            task = self.running.pop(ref)
            try:
                results.append(self.ray.get(ref))
            except Exception as exc:  # the task failed past its retries (lost node, OOM kill)
                results.append(_lost(task, f"ray: {type(exc).__name__}"))
        return results

    def close(self) -> None:
        for ref in self.running:
            self.ray.cancel(ref, force=True)
        self.running.clear()
        self.ray.shutdown()


def _lost(task: dict, error: str) -> dict:
    return {"key": (task["repo_type"], task["repo_id"]), "job": task["job"], "sha": task["sha"], "modified": task["modified"],
            "error": error, "seconds": 0.0, "worker": None}  # fmt: skip


# ---- the driver ----------------------------------------------------------------------------


@dataclass
class PassReport:
    pass_id: int
    listed: int = 0
    unchanged: int = 0
    scanned: int = 0
    failed: int = 0
    parked: int = 0
    findings: int = 0
    new_findings: int = 0
    seconds: float = 0.0
    rows: list[tuple[str, str, str]] = field(default_factory=list)  # scanned or failing repositories
    warnings: list[str] = field(default_factory=list)


class Outputs:
    """New findings as JSONL, appended to --output (or stdout). The file is its own dedupe
    record: lines already in it (from a killed pass) are not written again."""

    def __init__(self, path: Path | None, redact: bool) -> None:
        self.path, self.redact = path, redact
        self.seen: set[tuple[str, str, str]] = set()
        if path is not None and path.exists():
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    d = json.loads(line)
                    self.seen.add((d.get("repo", ""), d["fingerprint"], d.get("commit") or ""))
                except (ValueError, KeyError, TypeError):
                    continue
        self.fh = open_private(path, "a") if path is not None else sys.stdout

    def write(self, repo: str, findings: list) -> None:
        wrote = False
        for f in findings:
            key = (repo, f.fingerprint, f.commit or "")
            if key in self.seen:
                continue
            self.seen.add(key)
            self.fh.write(json.dumps(f.to_dict(redact=self.redact), default=str) + "\n")
            wrote = True
        if wrote:
            self.fh.flush()
            if self.path is not None:
                os.fsync(self.fh.fileno())

    def close(self) -> None:
        if self.path is not None:
            self.fh.close()


def run_pass(opts: Options, *, log: Callable[[str], None] | None = None) -> PassReport:
    """One pass. The caller holds the lock."""
    from .sources.hubapi import endpoint as hub_endpoint

    log = log or (lambda m: print(m, file=sys.stderr))
    base = hub_endpoint()
    db = connect(opts.db, timeout=60)
    queue = Queue(db, "sweep", max_attempts=opts.max_attempts, backoff=opts.backoff, max_backoff=3600.0,
                  lease=LEASE_SECONDS)  # fmt: skip
    started = time.monotonic()
    pass_id = db.execute("INSERT INTO sweep_passes (pid, started_at) VALUES (?, ?)", (os.getpid(), time.time())).lastrowid
    report = PassReport(pass_id)
    try:
        # 1. the listing (every page), recorded; what changed since its last scan gets a job
        listed: list[Listed] = []
        try:
            for item in enumerate_hub(base, opts.types, opts.author, opts.search, opts.limit):
                if item.sha is None:
                    _resolve_sha(base, item)
                listed.append(item)
        except Exception as exc:  # HTTP errors past the client's retries, connection errors
            detail = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            raise SweepError(f"cannot list repositories on {base}: {detail}") from None
        listed.sort(key=lambda i: i.last_modified or "", reverse=True)  # most recently modified first
        changed = []
        with transaction(db):
            for i in listed:
                scanned = db.execute(
                    "INSERT INTO sweep_repos (repo_type, repo_id, sha, last_modified, listed_pass) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT (repo_type, repo_id) DO UPDATE SET sha=excluded.sha, last_modified=excluded.last_modified, "
                    "listed_pass=excluded.listed_pass RETURNING scanned_sha, scanned_modified",
                    (i.repo_type, i.repo_id, i.sha, i.last_modified, pass_id)).fetchall()[0]  # fmt: skip
                if tuple(scanned) != (i.sha, i.last_modified):  # a new sha starts a parked job over
                    key = label(i.repo_type, i.repo_id)
                    queue.enqueue(key, {"repo_type": i.repo_type, "repo_id": i.repo_id, "sha": i.sha,
                                        "modified": i.last_modified}, replace=True)  # fmt: skip
                    changed.append(key)
        due = {j.key: j.not_before for j in queue.jobs("pending", "running")}
        todo = {k: due[k] for k in changed if k in due}  # the rest of what changed is parked
        report.listed, report.unchanged, report.parked = len(listed), len(listed) - len(changed), len(changed) - len(todo)
        log(f"pass {pass_id}: {report.listed} repositories listed, {len(todo)} to scan, "
            f"{report.unchanged} unchanged, {report.parked} parked")  # fmt: skip
        if todo:
            _scan_all(opts, db, queue, base, pass_id, todo, report, log)
        report.parked += report.failed
    finally:
        report.seconds = time.monotonic() - started
        db.execute("UPDATE sweep_passes SET finished_at=?, listed=?, unchanged=?, scanned=?, failed=?, parked=?, "
                   "findings=?, new_findings=? WHERE id=?",
                   (time.time(), report.listed, report.unchanged, report.scanned, report.failed, report.parked,
                    report.findings, report.new_findings, pass_id))  # fmt: skip
        db.close()
    return report


def _scan_all(opts: Options, db, queue: Queue, base: str, pass_id: int, waiting: dict[str, float], report: PassReport,
              log: Callable[[str], None]) -> None:  # fmt: skip
    """Claim this pass's jobs (`waiting`: key → when it is due) as workers free up, and record
    what they return, until none is left."""
    from .sources.hub import HubRepo, cache_dir

    outputs = Outputs(opts.output, opts.redact)
    common = {"endpoint": base, "hub_cache": str(cache_dir()), "cache_db": str(opts.db), "verify": opts.verify,
              "discussions": opts.discussions, "max_bytes": opts.max_repo_bytes, "lfs": opts.lfs,
              "settings": opts.settings}  # fmt: skip
    limit = opts.in_flight or max(1, opts.workers * 2)
    executor = RayExecutor(opts.workers, opts.ray_address) if (opts.ray or opts.ray_address) else LocalExecutor(opts.workers)
    bar = opts.progress(len(waiting)) if opts.progress else None
    try:
        while waiting or executor.running:
            now = time.time()
            free = limit - len(executor.running)
            for job in queue.claim(free, accept=lambda j: j.key in waiting) if free > 0 else ():
                del waiting[job.key]
                executor.submit({**common, **job.payload, "job": job.id})
            if not executor.running:
                for key in [k for k, t in waiting.items() if t <= now]:  # due, yet someone else holds it
                    del waiting[key]
                if waiting:
                    time.sleep(max(0.05, min(waiting.values()) - time.time()))
                continue
            soonest = min(waiting.values(), default=now + LEASE_SECONDS)
            for res in executor.wait(min(LEASE_SECONDS / 4, max(0.05, soonest - time.time()))):
                if opts.callbacks and any(f.verification == "verified" for f in res.get("findings", [])):
                    from .revoke import revoke

                    # queued before the job is done: a kill in between finds and queues them again
                    r = revoke(opts.db, res["findings"], opts.callbacks, HubRepo(*res["key"], base).web_url)
                    log(f"{label(*res['key'])}: revocation: {r.new} new, {r.delivered} delivered, {r.pending} pending")
                retry = _record(db, queue, outputs, pass_id, res, report)
                if retry is not None:
                    waiting[retry.key] = retry.not_before
                if bar:
                    bar.advance(report)
            queue.renew()
    finally:
        executor.close()
        outputs.close()
        queue.release_mine()
        if bar:
            bar.stop()


def _record(db, queue: Queue, outputs: Outputs, pass_id: int, res: dict, report: PassReport) -> Job | None:
    """The driver records one worker result; returns the job if it is to be retried."""
    name = label(*res["key"])
    if "error" in res:
        job = queue.retry(res["job"], res["error"])
        if job is None or job.state != "parked":
            return job
        report.failed += 1
        report.rows.append((name, "parked", f"after {job.attempts} attempts: {job.last_error}"))
        return None
    findings = res["findings"]
    for w in res.get("warnings", []):
        report.warnings.append(f"{name}: {w}")
    known = {id(f) for f in recorded(db, name, findings)}
    new = [f for f in findings if id(f) not in known]
    outputs.write(name, new)  # before the commit: a kill in between is deduped by the output file
    now = time.time()
    with transaction(db):
        if not queue.done(res["job"], findings=len(findings)):
            return None  # its lease was lost: whoever holds it now records it
        record_repo_findings(db, name, findings, f"pass {pass_id}", now)
        db.execute("UPDATE sweep_repos SET scanned_sha=?, scanned_modified=?, findings=?, seconds=?, scanned_at=? "
                   "WHERE repo_type=? AND repo_id=?", (res["sha"], res["modified"], len(findings), res["seconds"], now, *res["key"]))  # fmt: skip
        db.execute("INSERT INTO sweep_scans VALUES (?, ?, ?, ?, ?, ?, ?)",
                   (name, res["sha"], pass_id, res.get("worker"), res["seconds"], len(findings), now))  # fmt: skip
    report.scanned += 1
    report.findings += len(findings)
    report.new_findings += len(new)
    report.rows.append((name, "scanned", f"{len(findings)} findings, {len(new)} new, {res['seconds']:.2f} s"))
    return None


# ---- status --------------------------------------------------------------------------------


def status(db_path: Path) -> dict[str, Any]:
    db = connect(db_path)
    try:
        queue = Queue(db, "sweep")
        counts = queue.counts()
        failing = sorted((j for j in queue.jobs("pending", "parked") if j.last_error), key=lambda j: (-j.attempts, j.key))
        cols = ["id", "pid", "started_at", "finished_at", "listed", "unchanged", "scanned", "failed", "parked",
                "findings", "new_findings"]  # fmt: skip
        last = db.execute(f"SELECT {', '.join(cols)} FROM sweep_passes ORDER BY id DESC LIMIT 1").fetchone()
        slowest = db.execute("SELECT repo_type, repo_id, seconds, findings FROM sweep_repos WHERE seconds IS NOT NULL "
                             "ORDER BY seconds DESC LIMIT 5").fetchall()  # fmt: skip
        total_findings = db.execute("SELECT count(*) FROM repo_findings").fetchone()[0]
        passes = db.execute("SELECT count(*) FROM sweep_passes").fetchone()[0]
    finally:
        db.close()
    return {
        "counts": {"pending": counts["pending"] + counts["running"], "done": counts["done"], "failed": counts["failed"],
                   "parked": counts["parked"]},
        "passes": passes,
        "last_pass": dict(zip(cols, last)) if last else None,
        "findings": total_findings,
        "slowest": [{"repo": label(t, i), "seconds": round(s, 3), "findings": n} for t, i, s, n in slowest],
        "failing": [{"repo": j.key, "status": "parked" if j.state == "parked" else "failed", "attempts": j.attempts,
                     "error": j.last_error} for j in failing[:20]],
    }


def sweep(opts: Options, every: float | None = None, log: Callable[[str], None] | None = None,
          summary: Callable[[PassReport], None] | None = None) -> int:  # fmt: skip
    """One pass, or passes forever `every` seconds apart (start to start), each handed to
    `summary` when done. Exit code: 1 if the last pass recorded new findings, else 0."""
    log = log or (lambda m: print(m, file=sys.stderr))
    with SweepLock(opts.db):
        while True:
            begun = time.monotonic()
            report = run_pass(opts, log=log)
            if summary is not None:
                summary(report)
            if every is None:
                return 1 if report.new_findings else 0
            pause = max(0.0, every - (time.monotonic() - begun))
            log(f"next pass in {pause:.0f} s")
            time.sleep(pause)
