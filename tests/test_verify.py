"""Verification end to end: the real CLI against real HTTP stand-ins on 127.0.0.1."""

from __future__ import annotations

import json
import random
from urllib.parse import quote
from collections import Counter
from pathlib import Path

import pytest
from aiohttp import web

from leakscan.detectors import load_rules
from leakscan.examples import expand

from helpers import ACME, leakscan, token
from standin import RawServer, StandIn


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


# -- no raw token in a redacted report when a provider's endpoint answers malformed HTTP --------

# Specs that put the token in the URL (Telegram's bot<token>/ path, ?access_token=, ?api_key=):
# aiohttp's error text names the URL, and a hostile endpoint may echo it back in its answer.
IN_URL = sorted((r for r in load_rules().rules if r.verify is not None and r.verify.kind == "http"
                 and "{secret}" in r.verify.url), key=lambda r: r.id)  # fmt: skip

MALFORMED = {
    # the request line echoed inside a status line that is not HTTP
    "echoed-status-line": lambda head: b"\x00\x1b[31m " + head.split(b"\r\n", 1)[0] + b"\r\n\r\n",
    # a valid status line, then the request line echoed in a header aiohttp cannot parse
    "echoed-header": lambda head: b"HTTP/1.1 200 OK\r\nContent-Length: " + head.split(b"\r\n", 1)[0] + b"\r\n\r\n",
    # a short complaint: aiohttp's error text then carries the whole URL in its first 200 characters
    "duplicate-length": lambda head: b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    # bytes, then the connection closed
    "garbage": lambda head: bytes(range(256)),
}


@pytest.mark.parametrize("answer", MALFORMED, ids=list(MALFORMED))
def test_a_token_in_the_url_stays_out_of_a_redacted_report_when_the_answer_is_malformed(tmp_path, answer):
    assert {r.provider for r in IN_URL} >= {"telegram", "google", "mapbox", "roboflow"}
    root = tmp_path / "repo"
    root.mkdir()
    planted = {}
    for rule in IN_URL:
        text, secret = expand(rule.examples.positive[0], random.Random(f"{rule.id}/malformed"))
        (root / f"{rule.id}.txt").write_text(f"\n{text}\n")
        planted[secret] = rule
    with RawServer(MALFORMED[answer]) as endpoint:
        env = {"LEAKSCAN_NO_VERIFY": "0",
               **{f"LEAKSCAN_ENDPOINT_{r.provider.upper().replace('-', '_')}": endpoint.url for r in IN_URL}}  # fmt: skip
        run = leakscan("scan", root, "--redact", "-f", "json", "--no-cache", "--no-history", env=env)
    assert run.code == 1, run.err
    # the endpoint was asked, with the token in the URL, and echoed it where it could
    # (as sent: a character such as `|` travels percent-encoded in a query)
    assert [rule.id for s, rule in planted.items()
            if not any(s.encode() in h or quote(s, safe="").encode() in h for h in endpoint.heads)] == []
    by_detector = {f["detector"]: f for f in run.json}
    assert set(by_detector) == {r.id for r in IN_URL}
    shown = run.out + run.err
    for secret, rule in planted.items():
        # not the token, nor any 10 characters of it (a cut before the scrub would leave those)
        assert not [secret[i : i + 10] for i in range(len(secret) - 9) if secret[i : i + 10] in shown], (rule.id, answer)
        f = by_detector[rule.id]
        assert f["secret"] is None and f["verification"] == "unknown"
        reason = f["verification_reason"]
        assert reason.startswith("malformed HTTP answer: ") and reason.endswith(" after 3 attempts"), (rule.id, reason)
        if answer.startswith("echoed"):  # what was echoed is shown, the token replaced
            assert "[secret]" in reason and "\x1b" not in reason, (rule.id, reason)


def test_a_spec_host_is_trusted_by_name_and_port(tmp_path, acme):
    """An override on localhost:A makes localhost:A explicit, not localhost: a `{host}` rule
    whose content names localhost:B is refused, by the spec (B is not its port) or, when the
    spec lists localhost:B, by the client (only the override's origin may be loopback)."""
    with RawServer() as other, StandIn(lambda r, b: _unauthorized()) as acme_endpoint:
        (acme / "beta.toml").write_text(BETA.replace("PORT", str(other.port)))
        k1, k2 = token("beta_{b62:24}", "b1"), token("beta_{b62:24}", "b2")
        root = tmp_path / "r"
        root.mkdir()
        (root / "a.txt").write_text(f"{tok('a-override')}\nbeta {k1}@localhost:{other.port}\n")
        (root / "b.txt").write_text(f"betaport {k2}@localhost:{other.port}\n")
        run = leakscan("scan", root, "--rules", acme, "-f", "json", "--no-cache", "--no-history",
                       env={"LEAKSCAN_NO_VERIFY": "0", "LEAKSCAN_ENDPOINT_ACME": acme_endpoint.url.replace("127.0.0.1", "localhost")})  # fmt: skip
    states = {f["detector"]: (f["verification"], f.get("verification_reason")) for f in run.json}
    assert states["acme-key"] == ("invalid", "HTTP 401")  # the override itself is reached
    assert states["beta-key"] == ("unknown", f"refused: localhost:{other.port} is not one of beta's hosts")
    assert states["beta-port-key"][0] == "unknown"
    assert states["beta-port-key"][1] == (f"refused to connect to localhost:{other.port}: it resolves only to private, "
                                          "loopback or link-local addresses")  # fmt: skip
    assert other.connections == 0


async def _unauthorized():
    return web.Response(status=401)


BETA = """name = "Beta"
[[rules]]
id = "beta-key"
description = "Beta key on a host of its own"
keywords = ["beta "]
pattern = '''beta (?P<secret>beta_[A-Za-z0-9]{24})@(?P<host>[a-z.]{1,40}(?::[0-9]{1,5})?)'''
examples.positive = ['beta <<beta_{b62:24}>>@api.beta.example']
examples.negative = ['beta beta_x@api.beta.example']
[rules.verify]
url = "https://{host}/v1/me"
hosts = ["localhost"]
headers = { Authorization = "Bearer {secret}" }
valid = { status = [200] }
invalid = { status = [401] }

[[rules]]
id = "beta-port-key"
description = "Beta key, the spec trusting a port of its own"
keywords = ["betaport "]
pattern = '''betaport (?P<secret>beta_[A-Za-z0-9]{24})@(?P<host>[a-z.]{1,40}(?::[0-9]{1,5})?)'''
examples.positive = ['betaport <<beta_{b62:24}>>@api.beta.example']
examples.negative = ['betaport beta_x@api.beta.example']
[rules.verify]
url = "https://{host}/v1/me"
hosts = ["localhost:PORT"]
headers = { Authorization = "Bearer {secret}" }
valid = { status = [200] }
invalid = { status = [401] }
"""
