"""Verification end to end: the real CLI against real HTTP stand-ins on 127.0.0.1."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from aiohttp import web

from helpers import ACME, leakscan, token
from standin import StandIn




def tok(tag: str) -> str:
    return token("acme_{b62:24}", tag)


def plant(root: Path, tokens: list[str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i, t in enumerate(tokens):
        (root / f"f{i}.py").write_text(f"KEY = '{t}'\n")
    return root


def run_verify(path, rules, stand_in, *extra, env=None):
    return leakscan("scan", path, "--rules", rules, "-f", "json", "--no-cache", *extra,
                    env={"LEAKSCAN_NO_VERIFY": "0", "LEAKSCAN_ENDPOINT_ACME": stand_in.url, **(env or {})})  # fmt: skip


def bearer(request: web.Request) -> str:
    return request.headers.get("Authorization", "").removeprefix("Bearer ")


def test_states_identity_and_exact_request_counts(tmp_path, acme):
    live, dead, limited, weird = tok("live"), tok("dead"), tok("limited"), tok("weird")
    failures = Counter()

    async def provider(request, body):
        t = bearer(request)
        assert request.path == "/v1/me"
        if t == live:
            failures[t] += 1
            if failures[t] == 1:  # the first request is refused: must be retried, not "invalid"
                return web.Response(status=503)
            return web.json_response({"user": {"name": "ada"}, "scopes": ["read"], "echo": t})
        if t == limited:
            failures[t] += 1
            if failures[t] == 1:
                return web.Response(status=429, headers={"Retry-After": "1"})
            return web.Response(status=403)
        if t == weird:
            return web.Response(status=200, text="<html>not json</html>")
        return web.Response(status=401)

    root = plant(tmp_path / "repo", [live, dead, limited, weird, live])  # `live` twice: asked once
    with StandIn(provider) as s:
        run = run_verify(root, acme, s)
    assert run.code == 1, run.err
    states = {f["secret"]: (f["verification"], f.get("verification_reason"), f.get("identity"), f.get("restricted"))
              for f in run.json}  # fmt: skip
    assert states[live] == ("verified", None, {"name": "ada", "scopes": ["read"]}, None)
    assert states[limited] == ("verified", None, None, True)
    assert states[dead] == ("invalid", "HTTP 401", None, None)
    assert states[weird] == ("unknown", "HTTP 200 with a body that is not the expected JSON", None, None)
    per_token = Counter(bearer_of(r) for r in s.requests)
    assert per_token == {live: 2, limited: 2, dead: 1, weird: 1}
    assert all(r.headers["User-Agent"].startswith("leakscan-verify/") for r in s.requests)
    assert live not in json.dumps([f.get("identity") for f in run.json])


def bearer_of(seen) -> str:
    return seen.headers.get("Authorization", "").removeprefix("Bearer ")


def test_retries_give_up_after_three_attempts_with_the_reason(tmp_path, acme):
    t = tok("flaky")

    async def always_failing(request, body):
        return web.Response(status=500)

    with StandIn(always_failing) as s:
        run = run_verify(plant(tmp_path / "r", [t]), acme, s)
    (f,) = run.json
    assert (f["verification"], f["verification_reason"]) == ("unknown", "HTTP 500 after 3 attempts")
    assert len(s.requests) == 3


def test_timeout_and_connection_refused_are_unknown(tmp_path, acme):
    import asyncio

    t = tok("slow")

    async def slow(request, body):
        await asyncio.sleep(3)
        return web.json_response({"user": {"name": "x"}})

    with StandIn(slow) as s:
        run = run_verify(plant(tmp_path / "r", [t]), acme, s, "--verify-timeout", "0.3")
    (f,) = run.json
    assert (f["verification"], f["verification_reason"]) == ("unknown", "timed out after 3 attempts")
    with StandIn(slow) as s:
        port = s.port
    run = leakscan("scan", tmp_path / "r", "--rules", acme, "-f", "json", "--no-cache",
                   env={"LEAKSCAN_NO_VERIFY": "0", "LEAKSCAN_ENDPOINT_ACME": f"http://127.0.0.1:{port}"})  # fmt: skip
    (f,) = run.json
    assert f["verification"] == "unknown" and f["verification_reason"].startswith("cannot connect")
    assert f["verification_reason"].endswith("after 3 attempts")


def test_ssrf_guard_refuses_loopback_without_an_override(tmp_path, acme):
    async def provider(request, body):
        return web.json_response({"user": {"name": "x"}})

    with StandIn(provider) as s:
        rules = tmp_path / "evil"
        rules.mkdir()
        # a spec whose provider host resolves to loopback: refused at connect time
        (rules / "acme.toml").write_text(ACME.replace("https://api.acme.example/v1/me", f"https://localhost:{s.port}/v1/me"))
        run = leakscan("scan", plant(tmp_path / "r", [tok("ssrf")]), "--rules", rules, "-f", "json", "--no-cache",
                       env={"LEAKSCAN_NO_VERIFY": "0"})  # fmt: skip
    (f,) = run.json
    assert f["verification"] == "unknown"
    assert "private, loopback or link-local" in f["verification_reason"]
    assert s.requests == []


def test_verdicts_are_cached_in_the_store_and_only_verified_filters(tmp_path, acme):
    live, dead = tok("c-live"), tok("c-dead")

    async def provider(request, body):
        if bearer(request) == live:
            return web.json_response({"user": {"name": "ada"}})
        return web.Response(status=401)

    root = plant(tmp_path / "r", [live, dead])
    db = tmp_path / "store.sqlite3"
    with StandIn(provider) as s:
        first = leakscan("scan", root, "--rules", acme, "-f", "json", "--db", db, "--no-history",
                         env={"LEAKSCAN_NO_VERIFY": "0", "LEAKSCAN_ENDPOINT_ACME": s.url})  # fmt: skip
        second = leakscan("scan", root, "--rules", acme, "-f", "json", "--db", db, "--only-verified",
                          env={"LEAKSCAN_NO_VERIFY": "0", "LEAKSCAN_ENDPOINT_ACME": s.url})  # fmt: skip
    assert len(s.requests) == 2  # the second scan asked nobody
    assert [f["verification"] for f in first.json] == ["verified", "invalid"]
    assert [f["secret"] for f in second.json] == [live]
    assert live.encode() not in db.read_bytes() and dead.encode() not in db.read_bytes()


def test_fail_on_verified_and_no_verify(tmp_path, acme):
    async def provider(request, body):
        return web.Response(status=401)

    root = plant(tmp_path / "r", [tok("f")])
    with StandIn(provider) as s:
        assert run_verify(root, acme, s, "--fail-on", "verified").code == 0
        assert run_verify(root, acme, s).code == 1
        n = len(s.requests)
        off = run_verify(root, acme, s, "--no-verify")
        assert len(s.requests) == n and off.json[0]["verification"] == "unverified"
