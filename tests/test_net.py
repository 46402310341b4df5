"""The guarded HTTP client against real servers on 127.0.0.1: what is explicit may be local,
nothing else; redirects are answers, not followed; answers are bounded and never inflated."""

from __future__ import annotations

import asyncio
import gzip

import pytest
from aiohttp import web

from leakscan.net import Client, NetError, Refused

from standin import RawServer, StandIn, redirecting


def ask(explicit: list[str], url: str, **kwargs):
    async def go():
        async with Client(explicit, timeout=5) as client:
            return await client.request("GET", url, **kwargs)

    return asyncio.run(go())


async def ok(request, body):
    return web.Response(text="fine")


def test_only_the_explicit_origin_may_be_local_by_host_and_port():
    with StandIn(ok) as a, RawServer() as b:
        assert ask([f"http://localhost:{a.port}"], f"http://localhost:{a.port}/x").body == b"fine"
        # the same name on another port: neither http nor loopback is allowed there
        with pytest.raises(Refused, match=f"^refused: http:// to localhost:{b.port}, an address the operator did not give"):
            ask([f"http://localhost:{a.port}"], f"http://localhost:{b.port}/x")
        with pytest.raises(Refused, match=f"^refused to connect to localhost:{b.port}: it resolves only to private"):
            ask([f"http://localhost:{a.port}"], f"https://localhost:{b.port}/x")
        for literal in ("127.0.0.1", "[::ffff:127.0.0.1]", "[::1]", "169.254.169.254", "10.1.2.3"):
            with pytest.raises(Refused, match="is a private, loopback or link-local address"):
                ask([f"http://localhost:{a.port}"], f"https://{literal}:{b.port}/x")
        with pytest.raises(Refused, match="only http and https"):
            ask([], "ftp://example.org/x")
    assert b.connections == 0


def test_a_redirect_is_an_answer_and_its_target_is_never_asked():
    with redirecting() as (first, target):
        answer = ask([first.url, target.url], f"{first.url}/start")
    assert answer.status == 302 and answer.headers["Location"] == f"{target.url}/stolen"
    assert target.requests == []


def test_answers_are_bounded_and_never_inflated():
    bomb = gzip.compress(b"\0" * (32 << 20))

    async def big(request, body):
        if request.path == "/gzip":
            return web.Response(body=bomb, headers={"Content-Encoding": "gzip"})
        return web.Response(body=b"x" * (4 << 20))

    with StandIn(big) as s:
        assert len(ask([s.url], f"{s.url}/big", limit=1000).body) == 1000
        answer = ask([s.url], f"{s.url}/gzip")
    assert answer.body == bomb  # as sent: 32 KiB of gzip, not 32 MiB of zeros
    assert s.requests[0].headers["Accept-Encoding"] == "identity"


def test_failures_are_one_line_without_the_url():
    with RawServer(lambda head: b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n") as s:
        with pytest.raises(NetError) as caught:
            ask([s.url], f"{s.url}/bot1234567:AAsecretpart/getMe?key=hidden")
    assert str(caught.value) == "malformed HTTP answer: Duplicate Content-Length: b'Content-Length: 2' ^"


def test_huggingface_hub_calls_go_through_the_guarded_client():
    """What huggingface_hub asks (through `sources.hub.api`) meets the same rules: the endpoint
    may be local, another local origin is refused without a connection, also as a redirect's
    target."""
    import httpx2
    from huggingface_hub.utils import get_session

    from leakscan.sources.hubapi import api

    async def hub(request, body):
        if request.path == "/api/models/u/moved":
            return web.Response(status=302, headers={"Location": f"http://127.0.0.1:{other.port}/api/models/u/m"})
        return web.json_response({"id": "u/m", "sha": "a" * 40, "siblings": []})

    with RawServer() as other, StandIn(hub) as endpoint:
        hf = api(endpoint.url)
        info = hf.model_info("u/m")
        assert (info.id, info.sha) == ("u/m", "a" * 40)
        assert endpoint.requests[0].headers.get("Accept-Encoding") == "identity"  # never inflated
        with pytest.raises(httpx2.ConnectError, match=f"^refused: http:// to 127.0.0.1:{other.port}, an address the operator did not give"):
            get_session().get(f"http://127.0.0.1:{other.port}/api/models/u/m")
        with pytest.raises(httpx2.ConnectError, match="^refused: http:// to 127.0.0.1"):
            hf.model_info("u/moved")
    assert other.connections == 0


def test_a_forked_process_lets_go_of_no_inherited_client_noisily():
    """huggingface_hub closes its session in a forked child (scan workers, a listing process);
    the clients that session holds run on the parent's loop: dropping them made aiohttp report
    each one unclosed, on the child's stderr, in the middle of a scan's output."""
    import subprocess
    import sys

    async def hub(request, body):
        return web.json_response({"id": "u/m", "sha": "a" * 40, "siblings": []})

    script = (
        "import multiprocessing, sys\n"
        "from leakscan.sources.hubapi import api\n"
        "print(api(sys.argv[1]).model_info('u/m').sha[:4])\n"
        "child = multiprocessing.get_context('fork').Process(target=print, args=('child',))\n"
        "child.start(); child.join()\n"
        "print('exit', child.exitcode)\n"
    )
    with StandIn(hub) as endpoint:
        run = subprocess.run([sys.executable, "-c", script, endpoint.url], capture_output=True, text=True, timeout=60)
    assert run.stdout.split() == ["aaaa", "child", "exit", "0"], run.stderr
    assert run.stderr == ""
