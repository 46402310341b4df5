"""The one durable jobs queue, a table of the store: serve's webhook jobs, sweep's repository
scans and the revocation outbox's deliveries.

A job is keyed by (kind, key): enqueueing a key already there creates nothing (a redelivered
webhook, a leak found again), unless `replace` is asked and the payload changed (a repository
listed with a new sha). Jobs are claimed oldest first under a lease (`host:pid:nonce`) inside
`BEGIN IMMEDIATE`, so two processes never run the same one; a lease that expired, or whose process
is gone from this host (kill -9), is taken over, and a job interrupted on every one of its
attempts is parked rather than taken over forever. A failed attempt is retried after an
exponential backoff, and parked after `max_attempts`. `done` is one UPDATE, so it can sit in the
caller's transaction next to what the job recorded: effects happen exactly once.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
import dataclasses
from dataclasses import dataclass
from typing import Any

from ..textsafe import scrub
from .db import transaction

STATES = ("pending", "running", "done", "failed", "parked")  # `failed`: pending again after a failed attempt
_COLUMNS = "id, key, payload, state, attempts, not_before, last_error, started_at, finished_at"


@dataclass(frozen=True)
class Job:
    id: int
    key: str
    payload: dict[str, Any]
    state: str
    attempts: int
    not_before: float = 0.0
    last_error: str | None = None
    started_at: float | None = None
    finished_at: float | None = None


def _job(row: tuple) -> Job:
    return Job(row[0], row[1], json.loads(row[2]), *row[3:])


class Queue:
    """The jobs of one kind. Its methods lock `lock`, so threads may share the connection (hold
    the lock too around a transaction of your own on it)."""

    def __init__(self, db: sqlite3.Connection, kind: str, *, max_attempts: int = 5, backoff: float = 5.0,
                 max_backoff: float = 600.0, lease: float = 300.0) -> None:  # fmt: skip
        self.db, self.kind = db, kind
        self.max_attempts, self.backoff, self.max_backoff, self.lease = max_attempts, backoff, max_backoff, lease
        self.lock = threading.RLock()
        pid = os.getpid()
        self.owner = f"{socket.gethostname()}:{pid}:{_started(pid) or '-'}:{os.urandom(4).hex()}"

    def enqueue(self, key: str, payload: dict[str, Any], *, replace: bool = False) -> tuple[int, bool]:
        """(job id, whether it was queued now). A key queued, running, done or parked already is
        not queued again; with `replace`, one whose payload differs starts over with this one."""
        now = time.time()
        with self.lock, transaction(self.db):
            row = self.db.execute("SELECT id, payload FROM jobs WHERE kind=? AND key=?", (self.kind, key)).fetchone()
            if row and (not replace or json.loads(row[1]) == payload):
                return row[0], False
            if row:
                self.db.execute("UPDATE jobs SET payload=?, state='pending', attempts=0, lease=NULL, lease_until=NULL, "
                                "not_before=0, last_error=NULL, result=NULL, created_at=?, started_at=NULL, "
                                "finished_at=NULL WHERE id=?", (json.dumps(payload), now, row[0]))  # fmt: skip
                return row[0], True
            cur = self.db.execute("INSERT INTO jobs (kind, key, payload, state, created_at) VALUES (?, ?, ?, 'pending', ?)",
                                  (self.kind, key, json.dumps(payload), now))  # fmt: skip
            return cur.lastrowid, True

    def get(self, key: str) -> Job | None:
        with self.lock:
            row = self.db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE kind=? AND key=?", (self.kind, key)).fetchone()
        return _job(row) if row else None

    def jobs(self, *states: str) -> list[Job]:
        """This kind's jobs in these states (all if none), oldest first."""
        where = f" AND state IN ({','.join('?' * len(states))})" if states else ""
        with self.lock:
            rows = self.db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE kind=?{where} ORDER BY id", (self.kind, *states))
            return [_job(r) for r in rows.fetchall()]

    def claim(self, limit: int = 1, *, exclusive_by: str | None = None, accept: Callable[[Job], bool] | None = None,
              due_only: bool = True) -> list[Job]:  # fmt: skip
        """Up to `limit` pending jobs, oldest first, under this process's lease. `exclusive_by`: a
        payload field no two running jobs may share (one scan per repository: they share its
        mirror). `accept`: which jobs the caller wants. `due_only=False` also takes jobs waiting
        out a backoff (a flush the user asked for)."""
        now = time.time()
        with self.lock, transaction(self.db):
            _, live = self._reclaim(now)
            busy = {p.get(exclusive_by) for p in live} if exclusive_by else set()
            rows = self.db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE kind=? AND state='pending' "
                                   + ("AND not_before<=? ORDER BY id" if due_only else "ORDER BY id"),
                                   (self.kind, now) if due_only else (self.kind,))  # fmt: skip
            taken: list[Job] = []
            for row in rows:  # lazily: skipping costs what is skipped, not the whole queue
                job = _job(row)
                group = job.payload.get(exclusive_by) if exclusive_by else None
                if (accept is not None and not accept(job)) or (exclusive_by and group in busy):
                    continue
                taken.append(job)
                busy.add(group)
                if len(taken) >= limit:
                    break
            rows.close()
            self.db.executemany("UPDATE jobs SET state='running', lease=?, lease_until=?, attempts=attempts+1, "
                                "started_at=? WHERE id=?", [(self.owner, now + self.lease, now, j.id) for j in taken])  # fmt: skip
        return [dataclasses.replace(j, state="running", attempts=j.attempts + 1, started_at=now) for j in taken]

    def renew(self) -> None:
        """Extend the leases of what this process runs (call well within `lease` seconds)."""
        with self.lock, transaction(self.db):
            self.db.execute("UPDATE jobs SET lease_until=? WHERE kind=? AND state='running' AND lease=?",
                            (time.time() + self.lease, self.kind, self.owner))  # fmt: skip

    def done(self, job_id: int, **result: Any) -> bool:
        """Finish a job this process holds; one UPDATE, so it may be part of the caller's
        transaction. False if the lease was lost meanwhile (the job is someone else's now)."""
        with self.lock:
            cur = self.db.execute("UPDATE jobs SET state='done', lease=NULL, lease_until=NULL, last_error=NULL, result=?, "
                                  "finished_at=? WHERE id=? AND lease=?",
                                  (json.dumps(result) if result else None, time.time(), job_id, self.owner))  # fmt: skip
        return cur.rowcount > 0

    def retry(self, job_id: int, error: str, secrets: Iterable[str] = ()) -> Job | None:
        """A failed attempt: pending again after an exponential backoff, or parked once it had
        `max_attempts`. The error is kept scrubbed of `secrets` and URL paths. None if the lease
        was lost meanwhile."""
        now = time.time()
        with self.lock, transaction(self.db):
            row = self.db.execute("SELECT attempts FROM jobs WHERE id=? AND lease=?", (job_id, self.owner)).fetchone()
            if row is None:
                return None
            attempts = row[0]
            wait = min(self.max_backoff, self.backoff * 2 ** min(max(attempts - 1, 0), 30))
            self.db.execute("UPDATE jobs SET state=?, lease=NULL, lease_until=NULL, last_error=?, not_before=?, "
                            "finished_at=? WHERE id=?",
                            ("parked" if attempts >= self.max_attempts else "pending", scrub(error, secrets)[:500],
                             now + wait, now, job_id))  # fmt: skip
            return _job(self.db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id=?", (job_id,)).fetchone())

    def release_mine(self) -> int:
        """On a clean shutdown: what this process still runs goes back to pending, the
        interrupted attempt not counted."""
        with self.lock, transaction(self.db):
            return self.db.execute("UPDATE jobs SET state='pending', lease=NULL, lease_until=NULL, "
                                   "attempts=max(attempts-1, 0) WHERE kind=? AND state='running' AND lease=?",
                                   (self.kind, self.owner)).rowcount  # fmt: skip

    def recover(self) -> int:
        """Running jobs of processes that are gone go back to pending now; returns how many."""
        with self.lock, transaction(self.db):
            return self._reclaim(time.time())[0]

    def _reclaim(self, now: float) -> tuple[int, list[dict[str, Any]]]:
        """Stale running jobs back to pending (parked if interrupted on every attempt). Returns how
        many went back, and the payloads of the jobs still running."""
        rows = self.db.execute("SELECT id, payload, attempts, lease, lease_until FROM jobs WHERE kind=? AND state='running'",
                               (self.kind,)).fetchall()  # fmt: skip
        back, live = 0, []
        for job_id, payload, attempts, lease, until in rows:
            if lease == self.owner or (lease is not None and (until or 0) >= now and not lease_dead(lease)):
                live.append(json.loads(payload))
            elif attempts >= self.max_attempts:  # it took its process down each time: not again and again
                self.db.execute("UPDATE jobs SET state='parked', lease=NULL, lease_until=NULL, finished_at=?, last_error="
                                "coalesce(last_error, 'interrupted (process killed) on every attempt') WHERE id=?",
                                (now, job_id))  # fmt: skip
            else:
                self.db.execute("UPDATE jobs SET state='pending', lease=NULL, lease_until=NULL, not_before=0 WHERE id=?",
                                (job_id,))  # fmt: skip
                back += 1
        return back, live

    def counts(self) -> dict[str, int]:
        """Jobs by state (STATES), for metrics and status pages."""
        with self.lock:
            rows = self.db.execute("SELECT CASE WHEN state='pending' AND last_error IS NOT NULL THEN 'failed' ELSE state END, "
                                   "count(*) FROM jobs WHERE kind=? GROUP BY 1", (self.kind,)).fetchall()  # fmt: skip
        return {s: 0 for s in STATES} | dict(rows)

    def latency(self, buckets: Iterable[float]) -> tuple[int, float, list[int]]:
        """Done jobs: how many, their total seconds, and how many took at most each bucket (the
        last attempt's duration)."""
        bounds = list(buckets)
        cols = "".join(f", sum(finished_at - started_at <= {float(b)!r})" for b in bounds)
        with self.lock:
            row = self.db.execute(f"SELECT count(*), coalesce(sum(finished_at - started_at), 0){cols} FROM jobs "
                                  "WHERE kind=? AND state='done' AND started_at IS NOT NULL", (self.kind,)).fetchone()  # fmt: skip
        return row[0], row[1], [n or 0 for n in row[2:]]


def lease_dead(lease: str) -> bool:
    """A lease held by a process of this host that no longer runs (leakscan was killed). The
    lease names the process by id and start time: ids are reused (32,768 of them by default),
    and a killed worker's id taken by another process must not keep its jobs held."""
    host, _, rest = lease.partition(":")
    fields = rest.split(":")
    pid = fields[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):
        return False
    started = fields[1] if len(fields) == 3 else "-"  # host:pid:start:nonce (before: host:pid:nonce)
    return started != "-" and _started(int(pid)) not in (None, started)


def _started(pid: int) -> str | None:
    """When process `pid` started, in clock ticks since boot (Linux; None elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return None
    fields = stat[stat.rfind(b")") + 2 :].split()  # the name in parentheses may hold anything
    return fields[19].decode() if len(fields) > 19 else None
