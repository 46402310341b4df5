"""The revocation outbox: durable, exactly-once delivery of verified leaks to callbacks.

Every verified leak becomes one row in `leaks` and one job per callback in the store's jobs queue
(kind `revoke`), all in one transaction before any is attempted. Deliveries are claimed under a
lease, so two flushes never send the same one, and a lease whose process is gone is taken over.
A leak found again (a rescan, a second finding of the same token) maps to the same jobs and
creates nothing new.

The raw token is never written to the store: while a delivery needs it, it sits in `<db>.tokens`
(0600, rollback journal, `secure_delete`), and that file is deleted once no pending delivery
needs a token. A flush that cannot deliver counts one attempt; the next automatic flush waits
out a backoff (1, 2, 4, 8 minutes); after `MAX_ATTEMPTS` the delivery is parked and its token
wiped, so a dead receiver cannot keep a live token on disk for ever. `leakscan revoke flush`
tries regardless of the backoff (it still counts an attempt).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..model import Finding
from ..store.db import connect, connect_tokens, drop_tokens, transaction
from ..store.jobs import Queue

LEASE_SECONDS = 120.0
MAX_ATTEMPTS = 5  # flushes that failed to deliver, before a delivery is parked and its token wiped
BACKOFF = 60.0  # seconds before an automatic flush tries a failed delivery again, doubled each time


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
    job_id: int
    leak_id: str
    callback: dict[str, Any]
    callback_key: str
    token: str
    item: dict[str, Any]
    attempts: int


class Outbox:
    """The outbox of the store at `path`. `force`: claim deliveries still waiting out a backoff."""

    def __init__(self, path: Path | str, *, force: bool = False, max_attempts: int = MAX_ATTEMPTS) -> None:
        self.path = Path(path)
        self.db = connect(self.path)
        self.queue = Queue(self.db, "revoke", max_attempts=max_attempts, backoff=BACKOFF, max_backoff=3600.0,
                           lease=LEASE_SECONDS)  # fmt: skip
        self.force = force

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def enqueue(self, findings: list[Finding], callbacks: list[dict[str, Any]], repo: str | None) -> int:
        """Verified findings → leaks and pending deliveries, all in one transaction, their tokens
        kept while a delivery needs them. Returns how many deliveries are new."""
        now = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
        new, secrets = 0, {}
        with transaction(self.db):  # the store's write lock also orders every change to the tokens file
            for f in findings:
                wanted = [c for c in callbacks if not c.get("providers") or f.provider in c["providers"]]
                if f.verification != "verified" or not wanted:
                    continue
                lid = leak_id(f)
                self.db.execute("INSERT OR IGNORE INTO leaks VALUES (?, ?, ?, ?, ?)",
                                (lid, f.provider, json.dumps(leak_item(f, repo, stamp)), f.redacted, now))  # fmt: skip
                for c in wanted:
                    key = json.dumps({k: v for k, v in c.items() if k != "providers"}, sort_keys=True)
                    new += self.queue.enqueue(f"{lid} {key}", {"leak": lid, "callback": key})[1]
                secrets[lid] = f.secret
            needed = {k: v for k, v in secrets.items() if k in self._needed()}
            if needed:
                tokens = connect_tokens(self.path, create=True)
                try:
                    with transaction(tokens):
                        tokens.executemany("INSERT OR REPLACE INTO tokens VALUES (?, ?)", needed.items())
                finally:
                    tokens.close()
        return new

    def claim(self, limit: int = 1000) -> list[Claimed]:
        """Take due pending deliveries under a lease no other flush can also hold."""
        with transaction(self.db):
            jobs = self.queue.claim(limit, due_only=not self.force)
            if not jobs:
                return []
            leaks = {j.payload["leak"] for j in jobs}
            items = dict(self.db.execute(f"SELECT id, item FROM leaks WHERE id IN ({','.join('?' * len(leaks))})",
                                         list(leaks)).fetchall())  # fmt: skip
            tokens = connect_tokens(self.path, create=False)
            try:
                secrets = dict(tokens.execute("SELECT leak_id, token FROM tokens").fetchall()) if tokens else {}
            finally:
                if tokens is not None:
                    tokens.close()
        out, lost = [], []
        for j in jobs:
            lid, key = j.payload["leak"], j.payload["callback"]
            if lid in secrets and lid in items:
                out.append(Claimed(j.id, lid, json.loads(key), key, secrets[lid], json.loads(items[lid]), j.attempts))
            else:
                lost.append(j.id)
        for job_id in lost:  # cannot happen unless the tokens file was removed by hand
            self.queue.retry(job_id, "its token is no longer kept")
        return out

    def delivered(self, claimed: list[Claimed]) -> None:
        with transaction(self.db):
            for c in claimed:
                self.queue.done(c.job_id)
        self.wipe()

    def failed(self, claimed: list[Claimed], error: str) -> None:
        """A flush's attempts failed: retried by a later flush, or parked (its token wiped)."""
        with transaction(self.db):
            for c in claimed:
                self.queue.retry(c.job_id, error, secrets=(c.token,))
        self.wipe()

    def wipe(self) -> None:
        """Drop the tokens no pending delivery needs; the file goes when none is left."""
        with transaction(self.db):
            tokens = connect_tokens(self.path, create=False)
            if tokens is None:
                return
            try:
                with transaction(tokens):
                    kept = {r[0] for r in tokens.execute("SELECT leak_id FROM tokens")}
                    tokens.executemany("DELETE FROM tokens WHERE leak_id=?", [(k,) for k in kept - self._needed()])
                left = tokens.execute("SELECT count(*) FROM tokens").fetchone()[0]
            finally:
                tokens.close()
            if not left:
                drop_tokens(self.path)

    def _needed(self) -> set[str]:
        return {j.payload["leak"] for j in self.queue.jobs("pending", "running")}

    def rows(self) -> list[dict[str, Any]]:
        leaks = {r[0]: r[1:] for r in self.db.execute("SELECT id, provider, item, redacted FROM leaks")}
        shown = {"done": "delivered", "running": "pending"}
        out = []
        for j in self.queue.jobs():
            provider, item, redacted = leaks[j.payload["leak"]]
            item = json.loads(item)
            out.append({"id": j.payload["leak"], "provider": provider, "type": item["type"], "redacted": redacted,
                        "url": item["url"], "callback": j.payload["callback"], "state": shown.get(j.state, j.state),
                        "attempts": j.attempts, "last_error": j.last_error,
                        "delivered_at": j.finished_at if j.state == "done" else None})  # fmt: skip
        order = {"pending": 0, "parked": 1, "delivered": 2}
        return sorted(out, key=lambda r: (order.get(r["state"], 0), r["id"], r["callback"]))

    def pending(self) -> int:
        return len(self.queue.jobs("pending", "running"))
