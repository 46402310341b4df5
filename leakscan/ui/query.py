"""What the findings page reads from the store: one row per fingerprint (`findings`), walked
newest first by keyset (first_seen, fingerprint) so page 1,000 costs what page 1 does, filtered
by the indexed columns; places, verification history, revocation deliveries and notes of one."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlencode

PAGE = 100
MAX_PAGE = 1000  # rows one API call may ask for
DAYS = 30  # the chart's span
_FIELD_MAX = 300  # characters of one filter value
_COLUMNS = ("fingerprint, detector, provider, redacted, secret_sha256, repo, path, container, commit_id, source, url, "
            "verification, verification_reason, identity, status, status_at, first_seen, last_seen")  # fmt: skip


@dataclass(frozen=True)
class Filters:
    """The page's filters, as query parameters; empty means any."""

    provider: str = ""
    detector: str = ""
    verification: str = ""
    repo: str = ""
    source: str = ""
    status: str = ""
    q: str = ""  # text in the repository name or the path a row shows

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> Filters:
        return cls(**{f.name: str(query.get(f.name, "")).strip()[:_FIELD_MAX] for f in fields(cls)})

    def where(self) -> tuple[str, list[Any]]:
        """A WHERE clause over `findings f` (or "1") and its parameters."""
        terms: list[str] = []
        params: list[Any] = []
        for name in ("provider", "detector", "verification", "source", "status"):
            value = getattr(self, name)
            if value:
                terms.append(f"f.{name} = ?")
                params.append(value)
        if self.repo:  # any place of the finding, not only the first
            terms.append("f.fingerprint IN (SELECT fingerprint FROM repo_findings WHERE repo = ?)")
            params.append(self.repo)
        if self.q:
            like = "%" + self.q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            # the repository and path a row shows (a scan of one table; `repo` finds every place)
            terms.append("(f.repo LIKE ? ESCAPE '\\' OR f.path LIKE ? ESCAPE '\\')")
            params += [like, like]
        return (" AND ".join(terms) or "1"), params

    def query(self, **changes: str) -> str:
        """These filters (with `changes`) as a query string, empty ones left out."""
        values = {**asdict(self), **changes}
        return urlencode({k: v for k, v in values.items() if v})

    def active(self) -> bool:
        return any(asdict(self).values())


@dataclass(frozen=True)
class Row:
    fingerprint: str
    detector: str
    provider: str
    redacted: str
    secret_sha256: str
    repo: str
    path: str
    container: str | None
    commit: str
    source: str
    url: str | None
    verification: str
    verification_reason: str | None
    identity: dict[str, Any] | None
    status: str
    status_at: float | None
    first_seen: float
    last_seen: float
    repos: int = 1  # repositories it was recorded in

    @property
    def link(self) -> str | None:
        """Where a person sees it on the Hub: the file at its introducing commit (only web URLs)."""
        return self.url if self.url and self.url.startswith(("https://", "http://")) else None

    def to_dict(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in _ROW_FIELDS}  # asdict's deep copy cost most of an export
        data["first_seen"], data["last_seen"] = iso(self.first_seen), iso(self.last_seen)
        data["status_at"] = iso(self.status_at) if self.status_at else None
        return data


_ROW_FIELDS = tuple(f.name for f in fields(Row))


def _row(r: tuple) -> Row:
    values = list(r)
    values[13] = json.loads(values[13]) if values[13] else None
    return Row(*values)


def iso(ts: float | None) -> str:
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_cursor(text: str) -> tuple[float, str] | None:
    """`<first_seen>:<fingerprint>` as a page's next link gives it; None for anything else."""
    when, _, fp = text.partition(":")
    try:
        ts = float(when)
    except ValueError:
        return None
    if not fp or len(fp) > 64 or not all(c in "0123456789abcdef" for c in fp) or ts != ts:
        return None
    return ts, fp


def cursor(row: Row) -> str:
    return f"{row.first_seen!r}:{row.fingerprint}"


def page(db: sqlite3.Connection, filters: Filters, after: tuple[float, str] | None = None,
         limit: int = PAGE) -> tuple[list[Row], str | None]:  # fmt: skip
    """Up to `limit` findings newest first, after the cursor; and the next page's cursor."""
    where, params = filters.where()
    if after is not None:
        where += " AND (f.first_seen, f.fingerprint) < (?, ?)"
        params += list(after)
    sql = (f"SELECT {', '.join('f.' + c.strip() for c in _COLUMNS.split(','))}, "
           "(SELECT count(DISTINCT repo) FROM repo_findings r WHERE r.fingerprint = f.fingerprint) "
           f"FROM findings f WHERE {where} ORDER BY f.first_seen DESC, f.fingerprint DESC LIMIT ?")  # fmt: skip
    rows = [_row(r) for r in db.execute(sql, (*params, limit + 1))]
    return rows[:limit], (cursor(rows[limit - 1]) if len(rows) > limit else None)


def count(db: sqlite3.Connection, filters: Filters) -> int:
    where, params = filters.where()
    return db.execute(f"SELECT count(*) FROM findings f WHERE {where}", params).fetchone()[0]


def counts(db: sqlite3.Connection, filters: Filters, column: str) -> list[tuple[str, int]]:
    """(value, findings) of `column` (provider, verification…) under the filters, most first."""
    assert column in ("provider", "detector", "verification", "source", "status")
    where, params = filters.where()
    return [tuple(r) for r in db.execute(f"SELECT f.{column}, count(*) FROM findings f WHERE {where} "
                                         f"GROUP BY f.{column} ORDER BY 2 DESC, 1", params)]  # fmt: skip


def choices(db: sqlite3.Connection, column: str) -> list[str]:
    """Every value `column` holds (each walked from its index), for the filter controls."""
    assert column in ("provider", "detector", "verification", "source")
    return [r[0] for r in db.execute(f"SELECT DISTINCT {column} FROM findings ORDER BY 1")]


@dataclass(frozen=True)
class Day:
    date: str
    findings: int


def per_day(db: sqlite3.Connection, filters: Filters, days: int = DAYS) -> list[Day]:
    """Findings first seen on each of the `days` days up to the newest one (UTC), zeros included."""
    where, params = filters.where()
    got = dict(db.execute(f"SELECT CAST(f.first_seen / 86400 AS INTEGER) d, count(*) FROM findings f WHERE {where} "
                          "GROUP BY d ORDER BY d DESC LIMIT ?", (*params, days)).fetchall())  # fmt: skip
    if not got:
        return []
    last = max(got)
    return [Day(iso((d) * 86400)[:10], got.get(d, 0)) for d in range(last - days + 1, last + 1)]


def export(db: sqlite3.Connection, filters: Filters) -> Iterator[Row]:
    """Every finding under the filters, newest first, one page at a time (no long read lock)."""
    after = None
    while True:
        rows, nxt = page(db, filters, after, MAX_PAGE)
        yield from rows
        if nxt is None:
            return
        after = parse_cursor(nxt)


# ---- one finding ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Place:
    repo: str
    commit: str
    path: str
    line: int | None
    source: str
    container: str | None
    url: str | None
    origin: str
    first_seen: float
    last_seen: float

    @property
    def link(self) -> str | None:
        return self.url if self.url and self.url.startswith(("https://", "http://")) else None


@dataclass(frozen=True)
class Check:
    state: str
    reason: str | None
    checked_at: float


@dataclass(frozen=True)
class Delivery:
    callback: str  # its type and where it goes (host only)
    state: str
    attempts: int
    last_error: str | None
    finished_at: float | None


@dataclass(frozen=True)
class Note:
    body: str
    created_at: float


@dataclass(frozen=True)
class Detail:
    finding: Row
    places: list[Place]
    checks: list[Check]
    deliveries: list[Delivery]
    notes: list[Note]


def detail(db: sqlite3.Connection, fingerprint: str) -> Detail | None:
    from ..revoke.outbox import leak_id
    from ..textsafe import scrub

    r = db.execute(f"SELECT {_COLUMNS}, (SELECT count(DISTINCT repo) FROM repo_findings WHERE fingerprint = ?) "
                   "FROM findings WHERE fingerprint = ?", (fingerprint, fingerprint)).fetchone()  # fmt: skip
    if r is None:
        return None
    row = _row(r)
    places = [Place(*p) for p in db.execute(
        "SELECT repo, commit_id, path, line, source, container, url, origin, first_seen, last_seen FROM repo_findings "
        "WHERE fingerprint = ? ORDER BY first_seen, repo, commit_id LIMIT 1000", (fingerprint,))]  # fmt: skip
    checks = [Check(*c) for c in db.execute("SELECT state, reason, checked_at FROM finding_checks WHERE fingerprint = ? "
                                            "ORDER BY checked_at, rowid", (fingerprint,))]  # fmt: skip
    lid = leak_id(row)  # its detector and secret hash name the leak
    deliveries = []
    # a revocation job's key is `<leak id> <callback>`: a range of the (kind, key) index
    for payload, state, attempts, error, finished in db.execute(
            "SELECT payload, state, attempts, last_error, finished_at FROM jobs WHERE kind = 'revoke' AND key >= ? "
            "AND key < ? ORDER BY id", (lid + " ", lid + "!")):  # fmt: skip
        cb = json.loads(json.loads(payload)["callback"])
        target = cb.get("url") or cb.get("provider") or cb.get("name") or " ".join(cb.get("argv", [])[:1])
        deliveries.append(Delivery(f"{cb.get('type', '?')}: {scrub(target)}", {"done": "delivered", "running": "pending"}.get(state, state),
                                   attempts, error, finished if state == "done" else None))  # fmt: skip
    notes = [Note(*n) for n in db.execute("SELECT body, created_at FROM finding_notes WHERE fingerprint = ? ORDER BY id",
                                          (fingerprint,))]  # fmt: skip
    return Detail(row, places, checks, deliveries, notes)
