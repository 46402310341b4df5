"""Findings recorded in the store, never a raw secret: the redacted preview and the hash only.

`repo_findings` holds every place a finding was recorded at (repository, fingerprint, commit),
each once whatever the retries and passes; `findings` holds one row per fingerprint, the unit
people triage in `leakscan ui`, with its status, its last known verification state (the changes
in `finding_checks`) and its notes. Every surface records through `record_repo_findings`: serve
and sweep inside their job's transaction, scan and repo (with --db) and the hook through
`Store.record_findings`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from ..textsafe import escape, scrub

STATUSES = ("open", "false-positive", "revoked", "accepted-risk")
MAX_NOTE = 10_000  # characters of one note


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
    # oldest place first: the commit that introduced a finding heads its row
    for f in sorted(findings, key=lambda f: f.place().age()):
        _record_finding(db, repo, f, now)
    return new


def _record_finding(db, repo: str, f, now: float) -> None:
    reason = scrub(f.verification_reason, [f.secret])[:300] if f.verification_reason else None
    identity = json.dumps(f.identity, sort_keys=True) if f.identity else None
    last = db.execute("SELECT state FROM finding_checks WHERE fingerprint=? ORDER BY checked_at DESC, rowid DESC LIMIT 1",
                      (f.fingerprint,)).fetchone()  # fmt: skip
    # a scan without verification leaves what an earlier one learnt
    if last is None or (f.verification != "unverified" and f.verification != last[0]):
        db.execute("INSERT INTO finding_checks VALUES (?, ?, ?, ?)", (f.fingerprint, f.verification, reason, now))
    db.execute(
        "INSERT INTO findings (fingerprint, detector, provider, redacted, secret_sha256, repo, path, container, commit_id, "
        "source, url, verification, verification_reason, identity, first_seen, last_seen) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (fingerprint) DO UPDATE SET "
        "last_seen=max(last_seen, excluded.last_seen), "
        "verification=CASE WHEN excluded.verification='unverified' THEN verification ELSE excluded.verification END, "
        "verification_reason=CASE WHEN excluded.verification='unverified' THEN verification_reason "
        "ELSE excluded.verification_reason END, identity=coalesce(excluded.identity, identity)",
        (f.fingerprint, f.detector, f.provider, f.redacted, f.secret_sha256, repo, f.path, f.container, f.commit or "",
         f.source, f.url, f.verification, reason, identity, now, now))  # fmt: skip


def triaged(db) -> dict[str, set[str]]:
    """Fingerprints people marked false-positive or revoked (a scan suppresses the first and
    reports none of the second as live)."""
    out: dict[str, set[str]] = {"false-positive": set(), "revoked": set()}
    for status in out:
        out[status] = {r[0] for r in db.execute("SELECT fingerprint FROM findings WHERE status=?", (status,))}
    return out


def set_status(db, fingerprint: str, status: str, now: float) -> bool:
    """False if no such finding. `status` is one of STATUSES (the caller checked). Marked
    revoked, a finding is no longer shown live: its state is `revoked` until a later scan
    verifies it again (and then says whether the provider still accepts it)."""
    cur = db.execute("UPDATE findings SET status=?, status_at=? WHERE fingerprint=?", (status, now, fingerprint))
    if cur.rowcount and status == "revoked":
        if db.execute("UPDATE findings SET verification='revoked', verification_reason=NULL WHERE fingerprint=? "
                      "AND verification NOT IN ('invalid', 'revoked')", (fingerprint,)).rowcount:  # fmt: skip
            db.execute("INSERT INTO finding_checks VALUES (?, 'revoked', 'marked revoked in triage', ?)", (fingerprint, now))
    return cur.rowcount > 0


def add_note(db, fingerprint: str, body: str, now: float) -> bool:
    """False if no such finding."""
    if db.execute("SELECT 1 FROM findings WHERE fingerprint=?", (fingerprint,)).fetchone() is None:
        return False
    db.execute("INSERT INTO finding_notes (fingerprint, body, created_at) VALUES (?, ?, ?)",
               (fingerprint, body[:MAX_NOTE], now))  # fmt: skip
    return True


def ignore_lines(db) -> Iterable[str]:
    """The false positives as `.leakscanignore` lines, each with a comment saying what it is."""
    rows = db.execute("SELECT fingerprint, detector, repo, path, container FROM findings WHERE status='false-positive' "
                      "ORDER BY repo, path, fingerprint")  # fmt: skip
    for fp, detector, repo, path, container in rows:
        # a path is the repository's choice: escaped onto one line, it cannot add an entry
        where = escape(f"{repo} {path}" + (f"!{container}" if container else ""))
        yield f"{fp}  # false positive: {escape(detector)} {where}"
