"""`leakscan ui`: the findings page, an aiohttp server over the store.

Safe by default: it binds loopback, and off loopback it refuses to start without a token
(LEAKSCAN_UI_TOKEN, compared in constant time; a browser presents it once as ?token= and then
holds a session cookie derived from it). On loopback without a token, a request naming another
Host is refused, so a page of another site cannot reach it through DNS rebinding. Every POST
carries the page's CSRF token (a header from the script, a field from a plain form). Answers
carry a strict Content-Security-Policy (no inline script: ui.js is a file of the package),
frame-ancestors 'none' and X-Frame-Options DENY; the templates escape everything.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import hmac
import io
import ipaddress
import json
import secrets
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from aiohttp import web

from ..store.db import connect, transaction
from ..store.findings import MAX_NOTE, STATUSES, add_note, ignore_lines, set_status
from . import query
from .query import Filters
from .render import STATIC, chart, render

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")  # fmt: skip
SESSION_COOKIE = "leakscan_ui"
TOKEN_ENV = "LEAKSCAN_UI_TOKEN"
MAX_BODY = 64 << 10  # a status or a note; nothing else is posted
_STATIC = {"ui.js": "text/javascript", "ui.css": "text/css"}
_CSV_COLUMNS = ("fingerprint", "detector", "provider", "redacted", "secret_sha256", "verification", "status", "repo",
                "path", "container", "commit", "source", "url", "first_seen", "last_seen")  # fmt: skip


class UiError(Exception):
    """Cannot start: one line for the user."""


@dataclass
class Config:
    db: Path
    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None


def loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8", "surrogateescape"), b.encode("utf-8", "surrogateescape"))


class FindingsApp:
    def __init__(self, config: Config) -> None:
        if not config.db.is_file():
            raise UiError(f"no store at {config.db}")
        if not loopback(config.host) and not config.token:
            raise UiError(f"--host {config.host} is not loopback: set {TOKEN_ENV} to the token people must present")
        self.config = config
        self.db = connect(config.db)
        key = self._key()
        self.csrf = hmac.new(key, b"csrf", hashlib.sha256).hexdigest()
        self.session = hmac.new(config.token.encode(), b"session", hashlib.sha256).hexdigest() if config.token else ""
        self.static = {name: (STATIC / name).read_bytes() for name in _STATIC}

    def _key(self) -> bytes:
        """The CSRF key, kept in the store: a page loaded before a restart still posts after it."""
        with transaction(self.db):
            self.db.execute("INSERT OR IGNORE INTO meta VALUES ('ui_key', ?)", (secrets.token_hex(32),))
            return bytes.fromhex(self.db.execute("SELECT value FROM meta WHERE key='ui_key'").fetchone()[0])

    def close(self) -> None:
        self.db.close()

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.guard], client_max_size=MAX_BODY)
        app.on_response_prepare.append(self._headers)
        app.router.add_get("/", self.index)
        app.router.add_get("/findings/{fp}", self.finding)
        app.router.add_post("/findings/{fp}/notes", self.note)
        app.router.add_get("/api/findings", self.api_findings)
        app.router.add_post("/api/findings/{fp}/status", self.status)
        app.router.add_get("/export.csv", self.export_csv)
        app.router.add_get("/export.json", self.export_json)
        app.router.add_get("/export/leakscanignore", self.export_ignore)
        app.router.add_get("/static/{name}", self.static_file)
        return app

    # -- guards ------------------------------------------------------------------------------

    @web.middleware
    async def guard(self, request: web.Request, handler: Callable) -> web.StreamResponse:
        if not self.config.token:
            if not loopback(_hostname(request.host)):
                return _text(421, "this server answers to its loopback address only")
        elif not self._authorized(request):
            given = request.query.get("token")
            if request.method == "GET" and given is not None and _same(given, self.config.token):
                # once: the token leaves the address bar and the history for a session cookie
                rest = {k: v for k, v in request.query.items() if k != "token"}
                target = request.rel_url.with_query(rest)
                answer = web.Response(status=303, headers={"Location": str(target)})
                answer.set_cookie(SESSION_COOKIE, self.session, httponly=True, samesite="Strict", path="/")
                return answer
            return _text(401, f"this leakscan ui needs its token ({TOKEN_ENV}): open it once with ?token=…, "
                              "or send Authorization: Bearer …")  # fmt: skip
        try:
            return await handler(request)
        except web.HTTPException as exc:  # the router's 404 and 405
            return _text(exc.status, exc.reason)

    def _authorized(self, request: web.Request) -> bool:
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer ") and _same(auth[7:].strip(), self.config.token or ""):
            return True
        cookie = request.cookies.get(SESSION_COOKIE)
        return cookie is not None and _same(cookie, self.session)

    async def _headers(self, request: web.Request, response: web.StreamResponse) -> None:
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"  # a form post keeps its Origin; the Hub learns nothing
        response.headers["Cross-Origin-Opener-Policy"] = "same-origin"
        response.headers["Cross-Origin-Resource-Policy"] = "same-origin"
        response.headers.setdefault("Cache-Control", "no-store")

    async def _posted(self, request: web.Request) -> tuple[dict[str, str], bool] | web.Response:
        """The body of a POST (JSON from the script, a form without it) once its CSRF token and
        its Origin (when the browser names one) are checked; else the refusal."""
        origin = request.headers.get("Origin")
        if origin is not None and origin not in (f"http://{request.host}", f"https://{request.host}"):
            return _text(403, "cross-origin request refused")
        as_json = request.content_type == "application/json"
        try:
            if as_json:
                data = json.loads(await request.text())
                if not isinstance(data, dict):
                    raise ValueError("not an object")
                token = request.headers.get("X-CSRF-Token", "")
            else:
                data = dict(await request.post())
                token = str(data.get("csrf", "")) or request.headers.get("X-CSRF-Token", "")
        except web.HTTPRequestEntityTooLarge:
            return _text(413, "body too large")
        except (ValueError, UnicodeDecodeError):
            return _text(400, "the body is not JSON")
        if not token or not _same(token, self.csrf):
            return _text(403, "CSRF token missing or wrong: reload the page")
        return {k: v for k, v in data.items() if isinstance(v, str)}, as_json

    # -- pages -------------------------------------------------------------------------------

    async def index(self, request: web.Request) -> web.Response:
        filters = Filters.from_query(request.query)
        after = query.parse_cursor(request.query.get("after", ""))
        size = _limit(request.query.get("limit", ""))
        rows, nxt = query.page(self.db, filters, after, size)
        controls = [(c, query.choices(self.db, c)) for c in ("provider", "detector", "verification", "source")]
        html = render("list.html", csrf=self.csrf, filters=filters, rows=rows, next=nxt, after=after,
                      total=query.count(self.db, filters), providers=query.counts(self.db, filters, "provider"),
                      verifications=query.counts(self.db, filters, "verification"), controls=controls,
                      statuses_counted=query.counts(self.db, replace(filters, status=""), "status"),
                      chart=chart(query.per_day(self.db, filters)), here=request.path_qs, page_size=size,
                      limit="" if size == query.PAGE else str(size))  # fmt: skip
        return web.Response(text=html, content_type="text/html")

    async def finding(self, request: web.Request) -> web.Response:
        d = query.detail(self.db, request.match_info["fp"])
        if d is None:
            return _text(404, "no such finding")
        html = render("finding.html", csrf=self.csrf, d=d, f=d.finding, here=request.path)
        return web.Response(text=html, content_type="text/html")

    async def note(self, request: web.Request) -> web.Response:
        got = await self._posted(request)
        if isinstance(got, web.Response):
            return got
        data, as_json = got
        body = data.get("body", "").strip()
        if not body:
            return _text(400, "an empty note")
        fp = request.match_info["fp"]
        with transaction(self.db):
            known = add_note(self.db, fp, body[:MAX_NOTE], time.time())
        if not known:
            return _text(404, "no such finding")
        if as_json:
            return web.json_response({"fingerprint": fp, "note": body[:MAX_NOTE]})
        return web.Response(status=303, headers={"Location": f"/findings/{fp}#notes"})

    async def status(self, request: web.Request) -> web.Response:
        got = await self._posted(request)
        if isinstance(got, web.Response):
            return got
        data, as_json = got
        status = data.get("status", "")
        if status not in STATUSES:
            return _text(400, f"status must be one of {', '.join(STATUSES)}")
        fp = request.match_info["fp"]
        with transaction(self.db):
            known = set_status(self.db, fp, status, time.time())
        if not known:
            return _text(404, "no such finding")
        if as_json:
            return web.json_response({"fingerprint": fp, "status": status})
        return web.Response(status=303, headers={"Location": _local(data.get("next", "/"))})

    # -- data --------------------------------------------------------------------------------

    async def api_findings(self, request: web.Request) -> web.Response:
        filters = Filters.from_query(request.query)
        if not request.query.get("limit", "0").isdigit():
            return _text(400, "limit must be a number")
        limit = _limit(request.query.get("limit", ""))
        after = request.query.get("after")
        cursor = query.parse_cursor(after) if after else None
        if after and cursor is None:
            return _text(400, "after must be the `next` of an earlier answer")
        rows, nxt = query.page(self.db, filters, cursor, limit)
        return web.json_response({"findings": [r.to_dict() for r in rows], "next": nxt,
                                  "total": query.count(self.db, filters)})  # fmt: skip

    async def export_csv(self, request: web.Request) -> web.StreamResponse:
        answer = _download("leakscan-findings.csv", "text/csv; charset=utf-8")
        await answer.prepare(request)
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(_CSV_COLUMNS)
        for n, row in enumerate(query.export(self.db, Filters.from_query(request.query)), 1):
            d = row.to_dict()
            writer.writerow([_cell(d[c]) for c in _CSV_COLUMNS])
            if n % 1000 == 0:
                await answer.write(buf.getvalue().encode())
                buf.seek(0)
                buf.truncate()
        await answer.write(buf.getvalue().encode())
        await answer.write_eof()
        return answer

    async def export_json(self, request: web.Request) -> web.StreamResponse:
        answer = _download("leakscan-findings.json", "application/json")
        await answer.prepare(request)
        parts = ["["]
        for n, row in enumerate(query.export(self.db, Filters.from_query(request.query))):
            parts.append(("," if n else "") + "\n" + json.dumps(row.to_dict()))
            if len(parts) >= 1000:
                await answer.write("".join(parts).encode())
                parts = []
        parts.append("\n]\n")
        await answer.write("".join(parts).encode())
        await answer.write_eof()
        return answer

    async def export_ignore(self, request: web.Request) -> web.Response:
        lines = ["# leakscan: findings marked false-positive in the findings page", *ignore_lines(self.db)]
        answer = web.Response(text="\n".join(lines) + "\n", content_type="text/plain")
        answer.headers["Content-Disposition"] = 'attachment; filename="leakscanignore"'
        return answer

    async def static_file(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in self.static:
            return _text(404, "not found")
        return web.Response(body=self.static[name], content_type=_STATIC[name], headers={"Cache-Control": "no-cache"})


def _limit(text: str) -> int:
    """Rows a page asks for: PAGE unless a number up to MAX_PAGE is given."""
    return min(max(int(text), 1), query.MAX_PAGE) if text.isdigit() else query.PAGE


def _text(status: int, text: str) -> web.Response:
    return web.Response(status=status, text=text + "\n", content_type="text/plain")


def _download(name: str, content_type: str) -> web.StreamResponse:
    answer = web.StreamResponse(headers={"Content-Type": content_type,
                                         "Content-Disposition": f'attachment; filename="{name}"'})  # fmt: skip
    return answer


def _cell(value: Any) -> Any:
    """A spreadsheet runs a cell that starts like a formula: a path from a repository cannot."""
    if isinstance(value, dict):
        value = json.dumps(value, sort_keys=True)
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _hostname(host: str) -> str:
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def _local(target: str) -> str:
    """Where a form goes back to: a path of this server, never another site."""
    if not target.startswith("/") or target.startswith(("//", "/\\")) or any(ord(c) < 0x21 for c in target):
        return "/"
    return target


def url_of(host: str, port: int) -> str:
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}/"


def serve(config: Config, ready: Callable[[str], None] = print) -> None:
    """Serve until SIGINT or SIGTERM; `ready` gets the URL once listening."""
    ui = FindingsApp(config)
    try:
        asyncio.run(_serve(ui, ready))
    finally:
        ui.close()


async def _serve(ui: FindingsApp, ready: Callable[[str], None]) -> None:
    runner = web.AppRunner(ui.app(), access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, ui.config.host, ui.config.port)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        ready(url_of(ui.config.host, port))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()

