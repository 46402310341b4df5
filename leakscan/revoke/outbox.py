"""The revocation outbox: durable, exactly-once delivery of verified leaks to callbacks.

Every verified leak becomes one row in `leaks` (its raw token kept only while a delivery still
needs it) and one pending row per callback in `deliveries`, all in one transaction before any is
attempted. Deliveries are claimed with a lease inside `BEGIN IMMEDIATE`, so two flushes never
send the same one; a lease whose process is gone is taken over. A leak found again (a rescan, a
second finding of the same token) maps to the same id and creates nothing new. When every
delivery of a leak is done its token is overwritten (`secure_delete`) and the WAL truncated, so
no copy lingers in the store's files.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from dataclasses import dataclass
from typing import Any

from ..model import Finding

SCHEMA = """
CREATE TABLE IF NOT EXISTS leaks (
    id TEXT PRIMARY KEY,            -- stable idempotency key: detector + secret hash
    token TEXT,                     -- raw; NULL once no delivery needs it
    provider TEXT NOT NULL,
    item TEXT NOT NULL,             -- the partner-style item, without the token
    redacted TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS deliveries (
    leak_id TEXT NOT NULL REFERENCES leaks(id),
    callback TEXT NOT NULL,         -- JSON: what to call (never a credential)
    state TEXT NOT NULL,            -- pending | delivered
    attempts INTEGER NOT NULL DEFAULT 0,
    lease TEXT,                     -- host:pid:nonce of the flush holding it
    lease_until REAL,
    last_error TEXT,
    delivered_at REAL,
    PRIMARY KEY (leak_id, callback)
);
"""
LEASE_SECONDS = 120.0


def leak_id(f: Finding) -> str:
    return hashlib.sha256(f"leak\0{f.detector}\0{f.secret_sha256}".encode()).hexdigest()[:32]


def leak_item(f: Finding, repo: str | None, verified_at: str) -> dict[str, Any]:
    """The shape GitHub's secret-scanning partner program posts, plus context."""
    where = f"{f.path}@{f.commit}" if f.commit else f.path
    if f.container:
        where += f"!{f.container}"
    return {
        "id": leak_id(f), "type": f.detector, "url": f.url or where, "source": f.source,
        "repo": repo, "path": f.path, "commit": f.commit, "verified_at": verified_at,
    }  # fmt: skip


@dataclass(frozen=True)
class Claimed:
    leak_id: str
    callback: dict[str, Any]
    callback_key: str
    token: str
    item: dict[str, Any]
    attempts: int


class Outbox:
    def __init__(self, db) -> None:  # an open sqlite3 connection in autocommit mode
        self.db = db
        self.db.execute("PRAGMA secure_delete=ON")
        self.db.executescript(SCHEMA)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"

    def enqueue(self, findings: list[Finding], callbacks: list[dict[str, Any]], repo: str | None) -> int:
        """Verified findings → leaks and pending deliveries, all in one transaction. Returns how
        many deliveries are new."""
        now = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
        new = 0
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            for f in findings:
                if f.verification != "verified":
                    continue
                lid = leak_id(f)
                wanted = [c for c in callbacks if not c.get("providers") or f.provider in c["providers"]]
                if not wanted:
                    continue
                self.db.execute("INSERT OR IGNORE INTO leaks VALUES (?, ?, ?, ?, ?, ?)",
                                (lid, f.secret, f.provider, json.dumps(leak_item(f, repo, stamp)), f.redacted, now))  # fmt: skip
                added = 0
                for c in wanted:
                    key = json.dumps({k: v for k, v in c.items() if k != "providers"}, sort_keys=True)
                    cur = self.db.execute("INSERT OR IGNORE INTO deliveries (leak_id, callback, state) VALUES (?, ?, 'pending')",
                                          (lid, key))  # fmt: skip
                    added += cur.rowcount
                if added:  # a callback new to this leak needs the token again
                    self.db.execute("UPDATE leaks SET token=? WHERE id=? AND token IS NULL", (f.secret, lid))
                new += added
        return new

    def claim(self, limit: int = 1000) -> list[Claimed]:
        """Take due pending deliveries under a lease no other flush can also hold."""
        now = time.time()
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            rows = self.db.execute(
                "SELECT d.rowid, d.lease, d.lease_until FROM deliveries d WHERE d.state='pending' "
                "ORDER BY d.leak_id, d.callback").fetchall()  # fmt: skip
            take = [rid for rid, lease, until in rows if lease is None or until < now or lease_dead(lease)][:limit]
            self.db.executemany("UPDATE deliveries SET lease=?, lease_until=? WHERE rowid=?",
                                [(self.owner, now + LEASE_SECONDS, rid) for rid in take])  # fmt: skip
        out = []
        for rid in take:
            lid, cb, attempts, token, item = self.db.execute(
                "SELECT d.leak_id, d.callback, d.attempts, l.token, l.item FROM deliveries d JOIN leaks l ON l.id=d.leak_id "
                "WHERE d.rowid=?", (rid,)).fetchone()  # fmt: skip
            out.append(Claimed(lid, json.loads(cb), cb, token or "", json.loads(item), attempts))
        return out

    def delivered(self, claimed: list[Claimed]) -> None:
        now = time.time()
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany(
                "UPDATE deliveries SET state='delivered', delivered_at=?, attempts=attempts+1, lease=NULL, last_error=NULL "
                "WHERE leak_id=? AND callback=? AND lease=?", [(now, c.leak_id, c.callback_key, self.owner) for c in claimed])  # fmt: skip
        self.wipe_done()

    def attempted(self, claimed: list[Claimed], error: str) -> None:
        """A failed attempt, recorded while the lease is still held (a retry may follow)."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany("UPDATE deliveries SET attempts=attempts+1, last_error=? WHERE leak_id=? AND callback=? AND lease=?",
                                [(error[:500], c.leak_id, c.callback_key, self.owner) for c in claimed])  # fmt: skip

    def release(self, claimed: list[Claimed]) -> None:
        """Give back what is still pending after this flush's attempts, for the next flush."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany("UPDATE deliveries SET lease=NULL WHERE leak_id=? AND callback=? AND lease=?",
                                [(c.leak_id, c.callback_key, self.owner) for c in claimed])  # fmt: skip

    def wipe_done(self) -> None:
        """Overwrite the tokens no pending delivery needs, and leave no copy in the WAL."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("UPDATE leaks SET token=NULL WHERE token IS NOT NULL AND NOT EXISTS "
                            "(SELECT 1 FROM deliveries d WHERE d.leak_id=leaks.id AND d.state='pending')")  # fmt: skip
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def rows(self) -> list[dict[str, Any]]:
        cur = self.db.execute(
            "SELECT l.id, l.provider, json_extract(l.item, '$.type'), l.redacted, json_extract(l.item, '$.url'), d.callback, "
            "d.state, d.attempts, d.last_error, d.delivered_at FROM deliveries d JOIN leaks l ON l.id=d.leak_id "
            "ORDER BY d.state DESC, l.id, d.callback")  # fmt: skip
        keys = ("id", "provider", "type", "redacted", "url", "callback", "state", "attempts", "last_error", "delivered_at")
        return [dict(zip(keys, r)) for r in cur.fetchall()]

    def pending(self) -> int:
        return self.db.execute("SELECT count(*) FROM deliveries WHERE state='pending'").fetchone()[0]


def lease_dead(lease: str) -> bool:
    """A lease held by a process of this host that no longer runs (leakscan was killed)."""
    host, _, rest = lease.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
