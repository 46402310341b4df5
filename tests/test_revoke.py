"""Revocation end to end: verified leaks → the outbox → signed webhooks, commands and built-in
revokers; durable across a receiver that is down, failing, or a leakscan that is killed."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from aiohttp import web

from helpers import HF, leakscan, token
from standin import StandIn, redirecting
from test_verify import bearer, plant, tok

SECRET = "s3cret-for-tests"


def free_port() -> int:
    with StandIn(lambda r, b: None) as s:
        return s.port


class Receiver:
    """A partner-style webhook receiver: checks signatures, acknowledges per `behaviour`."""

    def __init__(self, behaviour="ok"):
        self.behaviour = behaviour
        self.posts: list[list[dict]] = []
        self.acked: Counter = Counter()
        self.bad_signatures = 0
        self.first_seen: set[str] = set()

    async def __call__(self, request, body):
        want = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        if request.headers.get("X-Leakscan-Signature") != want or not request.headers.get("X-Leakscan-Delivery"):
            self.bad_signatures += 1
            return web.Response(status=401)
        items = json.loads(body)
        self.posts.append(items)
        if self.behaviour == "fail-first" and not all(i["id"] in self.first_seen for i in items):
            self.first_seen.update(i["id"] for i in items)
            return web.Response(status=500)
        if self.behaviour == "hang":
            import asyncio

            await asyncio.sleep(60)
        for i in items:
            self.acked[i["token"]] += 1
        return web.Response(status=202)



@pytest.fixture
def provider():
    live = {tok("r-live-1"), tok("r-live-2")}

    async def answer(request, body):
        if bearer(request) in live:
            return web.json_response({"user": {"name": "ada"}})
        return web.Response(status=401)

    with StandIn(answer) as s:
        yield s, sorted(live)


def scan_env(provider_url: str) -> dict:
    return {"LEAKSCAN_NO_VERIFY": "0", "LEAKSCAN_ENDPOINT_ACME": provider_url, "LEAKSCAN_REVOKE_SECRET": SECRET}


def store_bytes(db) -> bytes:
    return b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*"))


def test_receiver_down_then_failing_first_posts_delivers_each_live_token_once(tmp_path, acme, provider):
    stand_in, live = provider
    dead = tok("r-dead")
    root = plant(tmp_path / "repo", [*live, dead, live[0]])
    db = tmp_path / "store.sqlite3"
    port = free_port()
    hook = f"http://127.0.0.1:{port}/revoke"
    run = leakscan("scan", root, "--rules", acme, "-f", "json", "--db", db, "--revoke-webhook", hook, env=scan_env(stand_in.url))
    assert run.code == 1, run.err
    assert "revocation: 2 new deliveries, 0 delivered, 2 pending" in run.err  # the receiver is down
    assert all(t.encode() in store_bytes(db) for t in live)  # kept while a delivery needs them
    receiver = Receiver("fail-first")
    with StandIn(receiver, port=port):
        # each first POST fails: the flush retries it (backoff) and delivers; a second flush has nothing left
        first = leakscan("revoke", "flush", "--db", db, env={"LEAKSCAN_REVOKE_SECRET": SECRET})
        assert first.code == 0 and "2 delivered, 0 failed, 0 pending" in first.out, first.out + first.err
        second = leakscan("revoke", "flush", "--db", db, env={"LEAKSCAN_REVOKE_SECRET": SECRET})
        assert second.code == 0 and "0 delivered, 0 failed, 0 pending" in second.out
        # found again by a rescan: no second delivery
        again = leakscan("scan", root, "--rules", acme, "--db", db, "--revoke-webhook", hook, env=scan_env(stand_in.url))
        assert "revocation: 0 new deliveries" in again.err
    assert receiver.bad_signatures == 0
    assert receiver.acked == Counter({live[0]: 1, live[1]: 1})
    assert all(i["token"] in live for post in receiver.posts for i in post)
    item = receiver.posts[-1][0]
    assert set(item) >= {"id", "token", "type", "url", "source", "repo", "path", "commit", "verified_at"}
    assert item["type"] == "acme-key" and item["source"] == "file"
    data = store_bytes(db)
    assert not any(t.encode() in data for t in [*live, dead])
    listing = leakscan("revoke", "list", "--db", db, "-f", "json")
    assert [r["state"] for r in json.loads(listing.out)] == ["delivered", "delivered"]
    assert not any(t in listing.out for t in live)


def test_two_flushes_at_once_do_not_double_send(tmp_path, acme, provider):
    stand_in, live = provider
    db = tmp_path / "store.sqlite3"
    port = free_port()
    leakscan("scan", plant(tmp_path / "repo", live), "--rules", acme, "--db", db,
             "--revoke-webhook", f"http://127.0.0.1:{port}/a", "--revoke-webhook", f"http://127.0.0.1:{port}/b",
             env=scan_env(stand_in.url))  # fmt: skip
    receiver = Receiver()
    env = {**os.environ, "LEAKSCAN_REVOKE_SECRET": SECRET}
    with StandIn(receiver, port=port):
        procs = [subprocess.Popen([sys.executable, "-m", "leakscan", "revoke", "flush", "--db", str(db)], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(3)]  # fmt: skip
        for p in procs:
            p.wait(60)
    assert receiver.acked == Counter({live[0]: 2, live[1]: 2})  # once per token and per webhook


def test_killed_mid_delivery_is_delivered_by_the_next_flush(tmp_path, acme, provider):
    stand_in, live = provider
    db = tmp_path / "store.sqlite3"
    port = free_port()
    leakscan("scan", plant(tmp_path / "repo", live), "--rules", acme, "--db", db,
             "--revoke-webhook", f"http://127.0.0.1:{port}/r", env=scan_env(stand_in.url))  # fmt: skip
    hanging = Receiver("hang")
    env = {**os.environ, "LEAKSCAN_REVOKE_SECRET": SECRET}
    with StandIn(hanging, port=port):
        proc = subprocess.Popen([sys.executable, "-m", "leakscan", "revoke", "flush", "--db", str(db)], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        deadline = time.monotonic() + 30
        while not hanging.posts and time.monotonic() < deadline:
            time.sleep(0.05)
        assert hanging.posts, "the flush never reached the receiver"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    receiver = Receiver()
    with StandIn(receiver, port=port):
        run = leakscan("revoke", "flush", "--db", db, env={"LEAKSCAN_REVOKE_SECRET": SECRET})
    assert run.code == 0 and "2 delivered" in run.out
    assert receiver.acked == Counter({live[0]: 1, live[1]: 1})
    assert not any(t.encode() in store_bytes(db) for t in live)


def test_command_and_builtin_huggingface_revoker(tmp_path):
    hf_live = token(HF, "hf-live")
    revoked: list = []

    async def hub(request, body):
        if request.path == "/api/whoami-v2":
            if bearer(request) == hf_live:
                return web.json_response({"name": "ada", "type": "user", "auth": {"accessToken": {"role": "write"}}})
            return web.Response(status=401)
        if request.path == "/api/credentials/revoke":
            revoked.append(json.loads(body))
            return web.Response(status=202)
        return web.Response(status=404)

    root = tmp_path / "repo"
    root.mkdir()
    (root / "a.py").write_text(f"HF_TOKEN = '{hf_live}'\n")
    (root / "b.py").write_text(f"HF_TOKEN = '{token(HF, 'hf-dead')}'\n")
    out = tmp_path / "delivered.jsonl"
    script = tmp_path / "save.py"
    script.write_text(f"import sys\nopen({str(out)!r}, 'a').write(sys.stdin.read() + '\\n')\n")
    with StandIn(hub) as s:
        run = leakscan("scan", root, "--no-history", "--db", tmp_path / "db.sqlite3", "-f", "json",
                       "--revoke-builtin", "huggingface", "--revoke-command", f"{sys.executable} {script}",
                       env={"LEAKSCAN_NO_VERIFY": "0", "LEAKSCAN_ENDPOINT_HUGGINGFACE": s.url})  # fmt: skip
    assert "revocation: 2 new deliveries, 2 delivered, 0 pending" in run.err, run.err
    assert revoked == [{"credentials": [hf_live]}]
    (item,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert item["token"] == hf_live and item["type"] == "huggingface-access-token" and item["path"] == "a.py"


def test_revocation_needs_verification_and_a_webhook_needs_a_url(tmp_path):
    run = leakscan("scan", tmp_path, "--revoke-webhook", "http://127.0.0.1:9/x", "--no-verify")
    assert run.code == 2 and run.err.startswith("leakscan: error: revocation needs verification")
    run = leakscan("scan", tmp_path, "--revoke-webhook", "ftp://x", env={"LEAKSCAN_NO_VERIFY": "0"})
    assert run.code == 2 and "needs an http(s) URL" in run.err
    run = leakscan("scan", tmp_path, "--revoke-builtin", "acme", env={"LEAKSCAN_NO_VERIFY": "0"})
    assert run.code == 2 and "no built-in revoker for 'acme'" in run.err


def test_plugin_revoker_from_an_entry_point(tmp_path, acme, provider):
    stand_in, live = provider
    plug = tmp_path / "plug"
    (plug / "myrev-0.dist-info").mkdir(parents=True)
    (plug / "myrev-0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: myrev\nVersion: 0\n")
    (plug / "myrev-0.dist-info" / "entry_points.txt").write_text("[leakscan.revokers]\nmine = myrev:revoke\n")
    got = tmp_path / "got.json"
    (plug / "myrev.py").write_text(f"import json\ndef revoke(items):\n    open({str(got)!r}, 'w').write(json.dumps(items))\n    return True\n")
    run = leakscan("scan", plant(tmp_path / "repo", live), "--rules", acme, "--db", tmp_path / "db.sqlite3",
                   "--revoke-plugin", "mine", env={**scan_env(stand_in.url), "PYTHONPATH": str(plug)})  # fmt: skip
    assert "2 delivered, 0 pending" in run.err, run.err
    assert sorted(i["token"] for i in json.loads(got.read_text())) == live


def test_config_file_callbacks_per_provider_with_their_own_secret(tmp_path, acme, provider):
    stand_in, live = provider
    port = free_port()
    config = tmp_path / "revoke.toml"
    config.write_text(f'''[[callbacks]]
type = "webhook"
url = "http://127.0.0.1:{port}/acme-only"
providers = ["acme"]
secret_env = "ACME_HOOK_KEY"

[[callbacks]]
type = "webhook"
url = "http://127.0.0.1:{port}/never"
providers = ["huggingface"]
''')
    receiver = Receiver()
    with StandIn(receiver, port=port) as s:
        run = leakscan("scan", plant(tmp_path / "repo", live), "--rules", acme, "--db", tmp_path / "db.sqlite3",
                       "--revoke-config", config,
                       env={"LEAKSCAN_NO_VERIFY": "0", "LEAKSCAN_ENDPOINT_ACME": stand_in.url, "ACME_HOOK_KEY": SECRET})  # fmt: skip
    assert "2 new deliveries, 2 delivered, 0 pending" in run.err, run.err
    assert {r.path for r in s.requests} == {"/acme-only"} and receiver.bad_signatures == 0
    bad = tmp_path / "bad.toml"
    bad.write_text('[[callbacks]]\ntype = "command"\nargv = "rm -rf /"\n')
    run = leakscan("scan", tmp_path / "repo", "--revoke-config", bad, env={"LEAKSCAN_NO_VERIFY": "0"})
    assert run.code == 2 and run.err.strip() == "leakscan: error: invalid revocation config: bad.toml: callbacks[1]: argv must be a list of strings (no shell)"


def test_a_redirecting_receiver_is_not_followed_and_errors_carry_no_token(tmp_path, acme, provider):
    """A webhook answering 302 elsewhere: not followed, the target never asked. A command that
    echoes what it was given to stderr and fails: its error is kept, the tokens replaced."""
    stand_in, live = provider
    db = tmp_path / "store.sqlite3"
    script = tmp_path / "echo_and_fail.py"
    script.write_text("import json, sys\nitem = json.load(sys.stdin)\n"
                      "sys.stderr.write(f\"refused {item['token']} of {item['path']}\\n\" * 50)\nsys.exit(3)\n")
    with redirecting() as (receiver, other):
        run = leakscan("scan", plant(tmp_path / "repo", live), "--rules", acme, "--db", db,
                       "--revoke-webhook", f"{receiver.url}/revoke", "--revoke-command", f"{sys.executable} {script}",
                       env=scan_env(stand_in.url))  # fmt: skip
        flushed = leakscan("revoke", "flush", "--db", db, env={"LEAKSCAN_REVOKE_SECRET": SECRET})
    assert "revocation: 4 new deliveries, 0 delivered, 4 pending" in run.err, run.err
    assert len(receiver.requests) == 2 * 3 and other.requests == []  # 3 attempts, each flush
    listing = json.loads(leakscan("revoke", "list", "--db", db, "-f", "json").out)
    errors = sorted({(json.loads(r["callback"])["type"], r["last_error"]) for r in listing})
    assert errors == [("command", ("command exited 3: " + r"refused [secret] of f0.py\n" * 50)[:300]),
                      ("command", ("command exited 3: " + r"refused [secret] of f1.py\n" * 50)[:300]),
                      ("webhook", "HTTP 302 (a redirect: not followed)")]  # fmt: skip
    assert flushed.code == 1 and "leakscan: delivery failed: HTTP 302 (a redirect: not followed)" in flushed.err
    shown = run.out + run.err + flushed.out + flushed.err + json.dumps(listing)
    assert not any(t in shown for t in live)


def holders(root, *secrets: str) -> list[str]:
    """Every file under `root` (the store, its -wal/-shm, the tokens file…) holding a secret's bytes."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.is_file() and any(s.encode() in p.read_bytes() for s in secrets))  # fmt: skip


def test_pending_tokens_live_only_in_a_private_tokens_file_gone_once_delivered_even_with_a_reader_open(tmp_path, acme, provider):
    stand_in, live = provider
    db = tmp_path / "state" / "store.sqlite3"  # a directory leakscan creates
    port = free_port()
    run = leakscan("scan", plant(tmp_path / "repo", live), "--rules", acme, "--db", db,
                   "--revoke-webhook", f"http://127.0.0.1:{port}/r", env=scan_env(stand_in.url))  # fmt: skip
    assert "revocation: 2 new deliveries, 0 delivered, 2 pending" in run.err, run.err
    assert holders(db.parent, *live) == ["store.sqlite3.tokens"]  # never the store itself
    assert [p.stat().st_mode & 0o777 for p in (db.parent, db, Path(f"{db}.tokens"))] == [0o700, 0o600, 0o600]
    reader = sqlite3.connect(db)
    try:
        reader.execute("BEGIN")
        assert reader.execute("SELECT count(*) FROM leaks").fetchone() == (2,)  # a read transaction across the wipe
        receiver = Receiver()
        with StandIn(receiver, port=port):
            flush = leakscan("revoke", "flush", "--db", db, env={"LEAKSCAN_REVOKE_SECRET": SECRET})
        assert flush.out.strip() == "2 delivered, 0 failed, 0 pending", flush.out + flush.err
        assert receiver.acked == Counter({live[0]: 1, live[1]: 1})
        assert holders(db.parent, *live) == [] and not Path(f"{db}.tokens").exists()
    finally:
        reader.close()
    assert holders(db.parent, *live) == []


def test_a_dead_receiver_parks_the_delivery_after_five_flushes_and_its_token_is_wiped(tmp_path, acme, provider):
    stand_in, live = provider
    db = tmp_path / "state" / "store.sqlite3"
    # a port bound and never listened on: refused for the whole test, and no other test can take it
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    hook = f"http://127.0.0.1:{dead.getsockname()[1]}/nobody-listens"
    root = plant(tmp_path / "repo", live[:1])
    run = leakscan("scan", root, "--rules", acme, "--db", db, "--revoke-webhook", hook, env=scan_env(stand_in.url))
    assert "revocation: 1 new deliveries, 0 delivered, 1 pending" in run.err, run.err  # attempt 1
    again = leakscan("scan", root, "--rules", acme, "--db", db, "--revoke-webhook", hook, env=scan_env(stand_in.url))
    assert "revocation: 0 new deliveries, 0 delivered, 1 pending" in again.err  # an automatic flush waits out the backoff

    def listed() -> tuple:
        (row,) = json.loads(leakscan("revoke", "list", "--db", db, "-f", "json").out)
        return row["state"], row["attempts"]

    assert listed() == ("pending", 1)
    for attempt in (2, 3, 4):  # `revoke flush` does not wait, and counts an attempt
        flush = leakscan("revoke", "flush", "--db", db, env={"LEAKSCAN_REVOKE_SECRET": SECRET})
        assert (flush.code, flush.out.strip()) == (1, "0 delivered, 1 failed, 1 pending")
        assert listed() == ("pending", attempt) and holders(db.parent, *live) == ["store.sqlite3.tokens"]
    last = leakscan("revoke", "flush", "--db", db, env={"LEAKSCAN_REVOKE_SECRET": SECRET})
    assert (last.code, last.out.strip()) == (0, "0 delivered, 1 failed, 0 pending")
    assert last.err.startswith("leakscan: delivery failed: cannot deliver: cannot connect: ")
    assert listed() == ("parked", 5)
    assert holders(db.parent, *live) == [] and not Path(f"{db}.tokens").exists()
    dead.close()
