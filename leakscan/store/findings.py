"""Findings of Hub repositories recorded by long-running scanners (`serve`, `sweep`): each once,
whatever the retries and passes; the redacted preview and the hash only, never the secret."""

from __future__ import annotations


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
