"""The embedded SQLite store: what was scanned with which detector set, so rescans only do what
is new. It never holds a raw secret: blobs are remembered by id with a count of findings, and a
blob that had findings is simply read and scanned again when its findings must be reported.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from contextlib import closing
from pathlib import Path

from .paths import cache_root

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- one row per (object id, detector set): how many findings its content gave
CREATE TABLE IF NOT EXISTS object_scans (
    oid BLOB NOT NULL,
    detectors TEXT NOT NULL,
    findings INTEGER NOT NULL,
    PRIMARY KEY (oid, detectors)
) WITHOUT ROWID;
-- per repository and detector set: the ref tips the last complete scan covered
CREATE TABLE IF NOT EXISTS repo_scans (
    repo TEXT NOT NULL,
    detectors TEXT NOT NULL,
    tips TEXT NOT NULL,
    scanned_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    PRIMARY KEY (repo, detectors)
);
-- per repository: the objects (blobs, commits) whose content had findings, to re-read on rescans
CREATE TABLE IF NOT EXISTS finding_objects (
    repo TEXT NOT NULL,
    detectors TEXT NOT NULL,
    oid TEXT NOT NULL,
    path TEXT NOT NULL,
    source TEXT NOT NULL,
    PRIMARY KEY (repo, detectors, oid, source)
);
-- verification verdicts by (provider check, secret) hash; never the secret itself
CREATE TABLE IF NOT EXISTS verdicts (
    key TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    reason TEXT,
    identity TEXT NOT NULL,
    restricted INTEGER NOT NULL,
    checked_at REAL NOT NULL
);
-- who introduced a blob at a path (history is append-only, so this stays true)
CREATE TABLE IF NOT EXISTS attributions (
    repo TEXT NOT NULL,
    oid TEXT NOT NULL,
    path TEXT NOT NULL,
    commit_id TEXT NOT NULL,
    author TEXT NOT NULL,
    date TEXT NOT NULL,
    PRIMARY KEY (repo, oid, path)
);
"""


# Findings of Hub repositories recorded by long-running scanners (`serve`, `sweep`): each once,
# whatever the retries and passes; the redacted preview and the hash only, never the secret.
REPO_FINDINGS_SCHEMA = """
CREATE TABLE IF NOT EXISTS repo_findings (
    repo TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    commit_id TEXT NOT NULL,          -- '' for findings without a commit (discussions)
    detector TEXT NOT NULL,
    provider TEXT NOT NULL,
    redacted TEXT NOT NULL,
    secret_sha256 TEXT NOT NULL,
    path TEXT NOT NULL,
    line INTEGER,
    source TEXT NOT NULL,
    container TEXT,
    url TEXT,
    verification TEXT NOT NULL,
    origin TEXT NOT NULL,             -- what recorded it first: 'job 12', 'pass 3'
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    PRIMARY KEY (repo, fingerprint, commit_id)
);
"""


def recorded(db, repo: str, findings: list) -> list:
    """Those of `findings` already recorded for `repo`."""
    return [f for f in findings if db.execute("SELECT 1 FROM repo_findings WHERE repo=? AND fingerprint=? AND commit_id=?",
                                              (repo, f.fingerprint, f.commit or "")).fetchone()]  # fmt: skip


def record_repo_findings(db, repo: str, findings: list, origin: str, now: float) -> list:
    """Record findings once each (inside the caller's transaction); returns the new ones."""
    new = []
    for f in findings:
        key = (repo, f.fingerprint, f.commit or "")
        cur = db.execute("INSERT OR IGNORE INTO repo_findings VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         (*key, f.detector, f.provider, f.redacted, f.secret_sha256, f.path, f.line, f.source,
                          f.container, f.url, f.verification, origin, now, now))  # fmt: skip
        if cur.rowcount:
            new.append(f)
        else:
            db.execute("UPDATE repo_findings SET last_seen=?, verification=? WHERE repo=? AND fingerprint=? AND commit_id=?",
                       (now, f.verification, *key))  # fmt: skip
    return new


class StoreError(Exception):
    pass


def default_path() -> Path:
    return cache_root() / "leakscan.sqlite3"


class Store:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(_SCHEMA)
            version = self.db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
            if version is None:
                self.db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            elif int(version[0]) > SCHEMA_VERSION:
                raise StoreError(f"{self.path}: written by a newer leakscan (schema {version[0]})")
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open store {self.path}: {exc}") from None

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- object scan cache ---------------------------------------------------------------------

    def scanned_objects(self, detectors: str) -> dict[str, int]:
        """oid → findings count, for every object scanned with this detector set."""
        with closing(self.db.execute("SELECT oid, findings FROM object_scans WHERE detectors=?", (detectors,))) as cur:
            return {oid.hex(): n for oid, n in cur}

    def record_objects(self, detectors: str, results: Iterable[tuple[str, int]]) -> None:
        rows = [(bytes.fromhex(oid), detectors, n) for oid, n in results]
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany("INSERT OR REPLACE INTO object_scans VALUES (?, ?, ?)", rows)

    # -- repositories --------------------------------------------------------------------------

    def repo_tips(self, repo: str, detectors: str) -> list[str] | None:
        row = self.db.execute("SELECT tips FROM repo_scans WHERE repo=? AND detectors=?", (repo, detectors)).fetchone()
        return json.loads(row[0]) if row else None

    def record_repo_tips(self, repo: str, detectors: str, tips: list[str]) -> None:
        self.db.execute("INSERT OR REPLACE INTO repo_scans (repo, detectors, tips) VALUES (?, ?, ?)",
                        (repo, detectors, json.dumps(sorted(set(tips)))))  # fmt: skip

    def objects_with_findings(self, repo: str, detectors: str, source: str) -> list[tuple[str, str]]:
        rows = self.db.execute("SELECT oid, path FROM finding_objects WHERE repo=? AND detectors=? AND source=? ORDER BY oid",
                               (repo, detectors, source)).fetchall()  # fmt: skip
        return [tuple(r) for r in rows]

    def record_findings_objects(self, repo: str, detectors: str, rows: Iterable[tuple[str, str, str]], *,
                                replace: bool, source: str) -> None:  # fmt: skip
        """Remember which objects of `source` had findings; `replace` forgets the earlier list
        first (a full scan knows the whole truth, an incremental one only adds to it)."""
        with self.db:
            self.db.execute("BEGIN")
            if replace:
                self.db.execute("DELETE FROM finding_objects WHERE repo=? AND detectors=? AND source=?",
                                (repo, detectors, source))  # fmt: skip
            self.db.executemany("INSERT OR REPLACE INTO finding_objects VALUES (?, ?, ?, ?, ?)",
                                [(repo, detectors, oid, path, src) for oid, path, src in rows])  # fmt: skip

    def verdict(self, key: str, ttl: float) -> tuple[str, str | None, dict, bool] | None:
        row = self.db.execute("SELECT state, reason, identity, restricted, checked_at FROM verdicts WHERE key=?",
                              (key,)).fetchone()  # fmt: skip
        if row is None or row[4] < time.time() - ttl:
            return None
        return row[0], row[1], json.loads(row[2]), bool(row[3])

    def record_verdict(self, key: str, state: str, reason: str | None, identity: dict, restricted: bool) -> None:
        self.db.execute("INSERT OR REPLACE INTO verdicts VALUES (?, ?, ?, ?, ?, ?)",
                        (key, state, reason, json.dumps(identity), int(restricted), time.time()))  # fmt: skip

    def places(self, repo: str, oids: Iterable[str]) -> dict[str, list[tuple[str, str, str, str]]]:
        """oid → every (path, commit, author, date) recorded for it, oldest first."""
        out: dict[str, list[tuple[str, str, str, str]]] = {}
        for oid in oids:
            rows = self.db.execute("SELECT path, commit_id, author, date FROM attributions WHERE repo=? AND oid=? "
                                   "ORDER BY date, commit_id, path", (repo, oid)).fetchall()  # fmt: skip
            if rows:
                out[oid] = [tuple(r) for r in rows]
        return out

    def record_places(self, repo: str, rows: Iterable[tuple[str, str, str, str, str]]) -> None:
        """(oid, path, commit, author, date) of blobs with findings: history is append-only, so a
        place stays true, and an incremental scan that reads the blob again needs them."""
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany("INSERT OR REPLACE INTO attributions VALUES (?, ?, ?, ?, ?, ?)",
                                [(repo, *r) for r in rows])  # fmt: skip
