"""The store's one SQLite database: the connection, every table, and versioned migrations.

A store carries its schema version in `PRAGMA user_version`. A fresh file gets the latest schema;
an older one is migrated in place, in one transaction, by the first leakscan that opens it; one
written by a newer leakscan is refused, never misread. `meta.schema` repeats the version because
wave-1 leakscans read that row, and so refuse a newer store too.

The database and its -wal/-shm are 0600 and a directory leakscan creates for them 0700, whatever
the umask. Raw tokens never enter it: a pending revocation's token lives in `<db>.tokens`, a
rollback-journal database (no WAL copy can outlive a wipe) that is deleted as soon as no pending
delivery needs a token.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..paths import cache_root

VERSION = 3

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- scan cache: one row per (object id, detector set), how many findings its content gave
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
-- findings of Hub repositories recorded by `serve` and `sweep`: each once, whatever the retries
-- and passes; the redacted preview and the hash only
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
-- the one jobs queue: serve's webhook jobs, sweep's repository scans, revocation deliveries
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,               -- webhook | sweep | revoke
    key TEXT NOT NULL,                -- dedupe key within the kind
    payload TEXT NOT NULL,            -- JSON; never a secret
    state TEXT NOT NULL,              -- pending | running | done | parked
    attempts INTEGER NOT NULL DEFAULT 0,
    lease TEXT,                       -- host:pid:nonce of the process running it
    lease_until REAL,
    not_before REAL NOT NULL DEFAULT 0,
    last_error TEXT,                  -- scrubbed (textsafe.scrub)
    result TEXT,                      -- JSON, what the finished job recorded
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    UNIQUE (kind, key)
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (kind, state, id);
-- sweep: every repository listed, what its last successful scan saw (its job says what is due)
CREATE TABLE IF NOT EXISTS sweep_repos (
    repo_type TEXT NOT NULL,
    repo_id TEXT NOT NULL,
    sha TEXT,                         -- main's sha as last listed
    last_modified TEXT,               -- as last listed
    scanned_sha TEXT,                 -- what the last successful scan saw
    scanned_modified TEXT,
    findings INTEGER,
    seconds REAL,                     -- duration of the last successful scan
    listed_pass INTEGER,
    scanned_at REAL,
    PRIMARY KEY (repo_type, repo_id)
);
CREATE TABLE IF NOT EXISTS sweep_passes (
    id INTEGER PRIMARY KEY,
    pid INTEGER NOT NULL,
    started_at REAL NOT NULL,
    finished_at REAL,
    listed INTEGER NOT NULL DEFAULT 0,
    unchanged INTEGER NOT NULL DEFAULT 0,
    scanned INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    parked INTEGER NOT NULL DEFAULT 0,
    findings INTEGER NOT NULL DEFAULT 0,
    new_findings INTEGER NOT NULL DEFAULT 0
);
-- one row per completed scan: the audit trail of "no repository scanned twice for one sha"
CREATE TABLE IF NOT EXISTS sweep_scans (
    repo TEXT NOT NULL,
    sha TEXT,
    pass_id INTEGER NOT NULL,
    worker TEXT,
    seconds REAL NOT NULL,
    findings INTEGER NOT NULL,
    finished_at REAL NOT NULL
);
-- verified leaks to revoke (their deliveries are jobs); the raw token is in the tokens file
CREATE TABLE IF NOT EXISTS leaks (
    id TEXT PRIMARY KEY,              -- stable idempotency key: detector + secret hash
    provider TEXT NOT NULL,
    item TEXT NOT NULL,               -- the partner-style item, without the token
    redacted TEXT NOT NULL,
    created_at REAL NOT NULL
);
-- triage (`leakscan ui`): one row per finding (fingerprint) whatever recorded it (scan and repo
-- with --db, the hook, serve, sweep); its places are its repo_findings rows. Redacted and hashed
-- only. repo, commit_id, source and url are those of the first place recorded
CREATE TABLE IF NOT EXISTS findings (
    fingerprint TEXT PRIMARY KEY,
    detector TEXT NOT NULL,
    provider TEXT NOT NULL,
    redacted TEXT NOT NULL,
    secret_sha256 TEXT NOT NULL,
    repo TEXT NOT NULL,
    path TEXT NOT NULL,
    container TEXT,
    commit_id TEXT NOT NULL,          -- the introducing commit, '' without one
    source TEXT NOT NULL,
    url TEXT,                         -- on the Hub: the file at its introducing commit
    verification TEXT NOT NULL,       -- the last known state (a later unverified scan keeps it)
    verification_reason TEXT,
    identity TEXT,                    -- JSON: whose key it is, as the provider said
    status TEXT NOT NULL DEFAULT 'open',  -- open | false-positive | revoked | accepted-risk
    status_at REAL,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL
);
-- newest first, and each filter of the findings page, walked by keyset (first_seen, fingerprint)
CREATE INDEX IF NOT EXISTS findings_new ON findings (first_seen, fingerprint);
CREATE INDEX IF NOT EXISTS findings_provider ON findings (provider, first_seen, fingerprint);
CREATE INDEX IF NOT EXISTS findings_detector ON findings (detector, first_seen, fingerprint);
CREATE INDEX IF NOT EXISTS findings_verification ON findings (verification, first_seen, fingerprint);
CREATE INDEX IF NOT EXISTS findings_status ON findings (status, first_seen, fingerprint);
CREATE INDEX IF NOT EXISTS findings_source ON findings (source, first_seen, fingerprint);
CREATE INDEX IF NOT EXISTS repo_findings_fingerprint ON repo_findings (fingerprint);
-- every change of a finding's verification state, oldest first
CREATE TABLE IF NOT EXISTS finding_checks (
    fingerprint TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT,
    checked_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS finding_checks_fingerprint ON finding_checks (fingerprint, checked_at);
CREATE TABLE IF NOT EXISTS finding_notes (
    id INTEGER PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS finding_notes_fingerprint ON finding_notes (fingerprint, id)
"""

TOKENS_SCHEMA = "CREATE TABLE IF NOT EXISTS tokens (leak_id TEXT PRIMARY KEY, token TEXT NOT NULL)"


class StoreError(Exception):
    """An unusable store: one line for the user (exit 2)."""


def default_path() -> Path:
    return cache_root() / "leakscan.sqlite3"


def connect(path: Path | str, *, timeout: float = 30.0, threads: bool = False) -> sqlite3.Connection:
    """The store at `path` in autocommit mode (write with `transaction`), created or migrated to
    the latest schema. `threads`: the caller shares it between threads, under a lock of its own."""
    path = Path(path)
    try:
        make_dirs(path.parent)
        db = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=not threads)
    except (OSError, sqlite3.Error) as exc:
        raise StoreError(f"cannot open store {path}: {exc}") from None
    try:
        db.execute("PRAGMA secure_delete=ON")
        version = _version(db, path)  # a store not ours to read is refused before anything changes it
        narrow(path)  # before anything is written to it
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        if version != VERSION:
            _migrate(db, path)
    except sqlite3.Error as exc:
        db.close()
        raise StoreError(f"cannot open store {path}: {exc}") from None
    except StoreError:
        db.close()
        raise
    return db


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE … COMMIT, or ROLLBACK on an error; inside an open transaction, part of it."""
    if db.in_transaction:
        yield db
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _version(db: sqlite3.Connection, path: Path) -> int:
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if not version:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not tables:
            return 0
        row = db.execute("SELECT value FROM meta WHERE key='schema'").fetchone() if "meta" in tables else None
        if row is None or not str(row[0]).isdigit():
            raise StoreError(f"{path}: not a leakscan store")
        version = int(row[0])  # a wave-1 store: versioned by its meta row only
    if version > VERSION:
        raise StoreError(f"{path}: written by a newer leakscan (store version {version}, this one reads up to {VERSION})")
    return version


def _migrate(db: sqlite3.Connection, path: Path) -> None:
    with transaction(db):
        version = _version(db, path)  # again under the write lock: another process may have done it
        for statement in SCHEMA.split(";\n"):  # (executescript would commit)
            db.execute(statement)
        for step in MIGRATIONS[version:VERSION] if version else ():
            step(db, path)
        db.execute(f"PRAGMA user_version={VERSION}")
        db.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (str(VERSION),))
    if version:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the pages a migration overwrote leave the WAL too


def _columns(db: sqlite3.Connection, table: str) -> set[str]:
    return {r[1] for r in db.execute(f"PRAGMA table_info({table})")}


def _v1_to_v2(db: sqlite3.Connection, path: Path) -> None:
    """Wave 1 → 2: serve's `webhook_jobs`, sweep's retry columns and the outbox's `deliveries`
    become rows of `jobs`; raw tokens leave the store for the tokens file."""
    now = "CAST(strftime('%s', 'now') AS REAL)"
    if "dedupe" in _columns(db, "webhook_jobs"):
        db.execute(
            "INSERT INTO jobs (kind, key, payload, state, attempts, lease, lease_until, not_before, last_error, result, "
            "created_at, started_at, finished_at) SELECT 'webhook', dedupe, json_set(payload, '$.repo_type', repo_type, "
            "'$.repo_id', repo_id, '$.repo', repo_type || '/' || repo_id, '$.event', event), "
            "CASE state WHEN 'failed' THEN 'pending' ELSE state END, attempts, lease, lease_until, not_before, last_error, "
            "CASE state WHEN 'done' THEN json_object('findings', findings) END, created_at, started_at, finished_at "
            "FROM webhook_jobs")  # fmt: skip
        db.execute("DROP TABLE webhook_jobs")
    if "status" in _columns(db, "sweep_repos"):
        db.execute(
            "INSERT INTO jobs (kind, key, payload, state, attempts, not_before, last_error, created_at, finished_at) "
            "SELECT 'sweep', CASE repo_type WHEN 'dataset' THEN 'datasets/' WHEN 'space' THEN 'spaces/' ELSE '' END || repo_id, "
            "json_object('repo_type', repo_type, 'repo_id', repo_id, "
            "  'sha', CASE status WHEN 'done' THEN scanned_sha ELSE sha END, "
            "  'modified', CASE status WHEN 'done' THEN scanned_modified ELSE last_modified END), "
            f"CASE status WHEN 'failed' THEN 'pending' ELSE status END, attempts, not_before, last_error, {now}, scanned_at "
            "FROM sweep_repos")  # fmt: skip
        db.execute("DROP INDEX IF EXISTS sweep_repos_status")
        for column in ("status", "attempts", "not_before", "last_error"):
            db.execute(f"ALTER TABLE sweep_repos DROP COLUMN {column}")
    if "leak_id" in _columns(db, "deliveries"):
        db.execute(
            "INSERT INTO jobs (kind, key, payload, state, last_error, created_at, finished_at) "
            "SELECT 'revoke', leak_id || ' ' || callback, json_object('leak', leak_id, 'callback', callback), "
            f"CASE state WHEN 'delivered' THEN 'done' ELSE 'pending' END, last_error, {now}, delivered_at FROM deliveries")  # fmt: skip
        pending = db.execute("SELECT DISTINCT l.id, l.token FROM leaks l JOIN deliveries d ON d.leak_id = l.id "
                             "WHERE d.state = 'pending' AND l.token IS NOT NULL").fetchall()  # fmt: skip
        if pending:
            tokens = connect_tokens(path, create=True)
            try:
                with transaction(tokens):
                    tokens.executemany("INSERT OR REPLACE INTO tokens VALUES (?, ?)", pending)
            finally:
                tokens.close()
        db.execute("DROP TABLE deliveries")
    if "token" in _columns(db, "leaks"):
        db.execute("UPDATE leaks SET token = NULL WHERE token IS NOT NULL")  # overwritten in place (secure_delete)
        db.execute("ALTER TABLE leaks DROP COLUMN token")


def _v2_to_v3(db: sqlite3.Connection, path: Path) -> None:
    """2 → 3, triage: the findings serve and sweep recorded before get their one row each (the
    tables are SCHEMA's), the oldest place first, so the findings page lists them too."""
    db.execute(
        "INSERT OR IGNORE INTO findings (fingerprint, detector, provider, redacted, secret_sha256, repo, path, container, "
        "commit_id, source, url, verification, first_seen, last_seen) "
        "SELECT fingerprint, detector, provider, redacted, secret_sha256, repo, path, container, commit_id, source, url, "
        "verification, first_seen, last_seen FROM repo_findings ORDER BY first_seen, repo, commit_id")  # fmt: skip
    db.execute("UPDATE findings SET last_seen = (SELECT max(last_seen) FROM repo_findings r "
               "WHERE r.fingerprint = findings.fingerprint)")  # fmt: skip


MIGRATIONS = [None, _v1_to_v2, _v2_to_v3]  # MIGRATIONS[v] takes a store from version v to v + 1


# ---- files ------------------------------------------------------------------------------------


def make_dirs(directory: Path) -> None:
    """`directory` and its missing parents, created 0700 whatever the umask; existing ones are left
    as they are."""
    if directory.is_dir():
        return
    make_dirs(directory.parent)
    try:
        os.mkdir(directory, 0o700)
    except FileExistsError:
        return
    os.chmod(directory, 0o700)


def narrow(path: Path) -> None:
    """A database SQLite just opened, and its side files if any, made 0600 (SQLite gives the -wal
    and -shm it creates the mode of the database). By path: opening and closing a descriptor of the
    file here would drop every POSIX lock SQLite holds on it in this process."""
    for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}-journal")):
        try:
            if os.stat(p).st_mode & 0o077:
                os.chmod(p, 0o600)
        except OSError:  # absent, or not ours to change
            pass


def open_private(path: Path | str, mode: str = "w"):
    """A text file that may hold raw secrets (a report): created 0600, an existing one narrowed."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | (os.O_APPEND if mode == "a" else os.O_TRUNC)
    fd = os.open(path, flags, 0o600)
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            os.fchmod(fd, 0o600)
    except OSError:
        pass
    return os.fdopen(fd, mode, encoding="utf-8")


def tokens_path(path: Path | str) -> Path:
    return Path(f"{path}.tokens")


def connect_tokens(path: Path | str, *, create: bool) -> sqlite3.Connection | None:
    """The pending tokens of the store at `path` (None if there are none and not `create`). The
    caller holds the store's write lock, which is what orders every change to this file."""
    tpath = tokens_path(path)
    if not create and not tpath.exists():
        return None
    db = sqlite3.connect(tpath, timeout=30, isolation_level=None)
    narrow(tpath)
    db.execute("PRAGMA journal_mode=DELETE")
    db.execute("PRAGMA secure_delete=ON")
    db.execute(TOKENS_SCHEMA)
    return db


def drop_tokens(path: Path | str) -> None:
    for p in (tokens_path(path), Path(f"{tokens_path(path)}-journal")):
        p.unlink(missing_ok=True)
