"""The scan cache: what was scanned with which detector set, so rescans only do what is new, plus
verification verdicts and blob attributions. It never holds a raw secret: blobs are remembered by
id with a count of findings, and a blob that had findings is simply read and scanned again when
its findings must be reported.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from contextlib import closing
from pathlib import Path

from .db import connect, transaction
from .findings import record_repo_findings, triaged


class Store:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.db = connect(self.path)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- object scan cache ---------------------------------------------------------------------

    def scanned_objects(self, detectors: str, oids: Iterable[str]) -> dict[str, int]:
        """oid → candidates count, for those of `oids` scanned with this detector set. Looked up
        by key (the primary key's index): a store that sweeps thousands of repositories is never
        read whole for one repository's listing."""
        wanted = [bytes.fromhex(o) for o in oids]
        out: dict[str, int] = {}
        for i in range(0, len(wanted), 500):
            part = wanted[i : i + 500]
            query = f"SELECT oid, findings FROM object_scans WHERE detectors=? AND oid IN ({','.join('?' * len(part))})"
            with closing(self.db.execute(query, (detectors, *part))) as cur:
                out.update((oid.hex(), n) for oid, n in cur)
        return out

    def record_objects(self, detectors: str, results: Iterable[tuple[str, int]]) -> None:
        rows = [(bytes.fromhex(oid), detectors, n) for oid, n in results]
        with transaction(self.db):
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
        with transaction(self.db):
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
        """oid → every (path, commit, author, date) recorded for it."""
        out: dict[str, list[tuple[str, str, str, str]]] = {}
        for oid in oids:
            rows = self.db.execute("SELECT path, commit_id, author, date FROM attributions WHERE repo=? AND oid=?",
                                   (repo, oid)).fetchall()  # fmt: skip
            if rows:
                out[oid] = [tuple(r) for r in rows]
        return out

    def record_places(self, repo: str, rows: Iterable[tuple[str, str, str, str, str]]) -> None:
        """(oid, path, commit, author, date) of blobs with findings: history is append-only, so a
        place stays true, and an incremental scan that reads the blob again needs them."""
        with transaction(self.db):
            self.db.executemany("INSERT OR REPLACE INTO attributions VALUES (?, ?, ?, ?, ?, ?)",
                                [(repo, *r) for r in rows])  # fmt: skip

    # -- findings and their triage -------------------------------------------------------------

    def record_findings(self, repo: str, findings: list, origin: str) -> list:
        """Record a scan's findings for the findings page (redacted and hashed); the new ones."""
        with transaction(self.db):
            return record_repo_findings(self.db, repo, findings, origin, time.time())

    def triaged(self) -> dict[str, set[str]]:
        """Fingerprints marked false-positive, and revoked."""
        return triaged(self.db)
