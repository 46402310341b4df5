"""Every verification spec shipped in detectors/, run by the real CLI against one loopback
stand-in built from the specs themselves: a live token must come out `verified`, a dead one
`invalid`, each asked exactly once, at the spec's path, with the secret where the spec puts it."""

from __future__ import annotations

import base64
import random

import pytest
from urllib.parse import unquote_plus, urlsplit

from aiohttp import web

from leakscan.detectors import load_rules
from leakscan.examples import expand

from helpers import leakscan
from standin import StandIn

RULES = [r for r in load_rules().rules if r.verify is not None]


def _doc(conditions) -> dict:
    doc: dict = {}
    for path, value in conditions:
        node = doc
        *parents, last = path.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = "present" if value == "*" else value
    return doc


def _answer(check, fallback_status: int) -> web.Response:
    status = check.status[0] if check.status else fallback_status
    return web.json_response(_doc(check.json), status=status)


def _aws_answer(live: bool) -> web.Response:
    if live:
        return web.Response(text="<GetCallerIdentityResult><Arn>arn:aws:iam::123456789012:user/ci</Arn>"
                                 "<Account>123456789012</Account></GetCallerIdentityResult>")  # fmt: skip
    return web.Response(status=403, text="<Error><Code>InvalidClientTokenId</Code></Error>")


def _carries(seen, secret: str) -> bool:
    auth = seen.headers.get("Authorization", "")
    if auth.startswith("Basic "):
        auth = base64.b64decode(auth[6:]).decode(errors="replace")
    haystack = " ".join([unquote_plus(seen.path), unquote_plus(seen.query), auth, *seen.headers.values(),
                         unquote_plus(seen.body.decode(errors="replace"))])  # fmt: skip
    return secret in haystack


@pytest.mark.parametrize("flaky", [False, True], ids=["clean", "first-request-refused"])
def test_every_shipped_spec_against_a_stand_in(tmp_path, flaky):
    """With `flaky`, the stand-in refuses each token's first request with 503 or 429
    (Retry-After: 1): still every live token verified, every dead one invalid, in two requests."""
    assert len({r.provider for r in RULES}) >= 30
    root = tmp_path / "repo"
    root.mkdir()
    planted: dict[str, tuple] = {}  # secret (or AWS key id) → (rule, live?)
    for rule in RULES:
        for live in (True, False):
            text, secret = expand(rule.examples.positive[0], random.Random(f"{rule.id}/{live}"))
            (root / f"{rule.id}-{'live' if live else 'dead'}.txt").write_text(f"\n{text}\n")
            key = secret
            if rule.verify.kind == "aws-sigv4":
                key = next(w for w in text.replace('"', " ").replace("'", " ").replace("=", " ").split() if w.startswith("AKIA"))
            planted[key] = (rule, live, secret)

    refused: set[str] = set()

    async def provider(request, body):
        seen = type("S", (), {"path": request.path, "query": request.query_string, "headers": dict(request.headers), "body": body})
        for key, (rule, live, secret) in planted.items():
            if flaky and key not in refused and (
                    f"Credential={key}/" in request.headers.get("Authorization", "") or _carries(seen, secret)):  # fmt: skip
                refused.add(key)
                if len(refused) % 2:
                    return web.Response(status=503)
                return web.Response(status=429, headers={"Retry-After": "1"})
            spec = rule.verify
            if spec.kind == "aws-sigv4":
                if f"Credential={key}/" in request.headers.get("Authorization", ""):
                    return _aws_answer(live)
                continue
            if _carries(seen, secret) and request.path == urlsplit(spec.url.replace("{secret}", secret)).path:
                return _answer(spec.valid, 200) if live else _answer(spec.invalid, 401)
        return web.Response(status=404, text="no such token here")

    providers = {r.provider for r in RULES}
    with StandIn(provider) as s:
        env = {"LEAKSCAN_NO_VERIFY": "0", **{f"LEAKSCAN_ENDPOINT_{p.upper().replace('-', '_')}": s.url for p in providers}}
        run = leakscan("scan", root, "-f", "json", "--no-cache", "--verify-intrusive", env=env, timeout=300)
    assert run.code == 1, run.err
    states = {}
    for f in run.json:
        states.setdefault(f["secret"], set()).add((f["detector"], f["verification"], f.get("verification_reason")))
    wrong = []
    for key, (rule, live, secret) in planted.items():
        want = "verified" if live else "invalid"
        got = {(d, v, why) for d, v, why in states.get(secret, set()) if d == rule.id}
        if not any(v == want for _, v, _ in got):
            wrong.append(f"{rule.id} {'live' if live else 'dead'}: {sorted(got) or 'not found'}")
    assert wrong == []
    asked = {}
    for seen in s.requests:
        for key, (rule, live, secret) in planted.items():
            if (rule.verify.kind == "aws-sigv4" and f"Credential={key}/" in seen.headers.get("Authorization", "")) or (
                    rule.verify.kind != "aws-sigv4" and _carries(seen, secret)):  # fmt: skip
                asked[key] = asked.get(key, 0) + 1
    assert {k: n for k, n in asked.items() if n != (2 if flaky else 1)} == {}
