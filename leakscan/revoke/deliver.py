"""Delivering claimed outbox entries to callbacks: signed webhooks, commands, built-in
revokers of providers with a public or self-revoke API, and plugins (entry points).

HTTP goes through the guarded client (`leakscan.net`): no redirects; the configured webhook
URLs and endpoint overrides are the explicit origins that may be local. Every error recorded
or printed is rendered by `textsafe.scrub` with the tokens of its batch."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import random
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..net import USER_AGENT, Client, endpoint_overrides
from ..textsafe import scrub
from .outbox import Claimed, Outbox

SECRET_ENV = "LEAKSCAN_REVOKE_SECRET"
WEBHOOK_BATCH = 100
ATTEMPTS = 3  # per delivery and flush
TIMEOUT = 10.0

# provider → (method, URL, how the batch goes): the providers' own revoke endpoints
BUILTIN = {
    "huggingface": ("POST", "https://huggingface.co/api/credentials/revoke", "batch"),  # public, 202 always
    "github": ("POST", "https://api.github.com/credentials/revoke", "batch"),  # public, unauthenticated
    "slack": ("POST", "https://slack.com/api/auth.revoke", "self"),  # the token revokes itself
    "gitlab": ("DELETE", "https://gitlab.com/api/v4/personal_access_tokens/self", "self"),
}
BUILTIN_BATCH = {"huggingface": 100, "github": 1000}


@dataclass
class FlushReport:
    delivered: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


def callbacks_from_options(webhooks: list[str], commands: list[list[str]], builtins: list[str],
                           plugins: list[str]) -> list[dict[str, Any]]:  # fmt: skip
    out: list[dict[str, Any]] = [{"type": "webhook", "url": u} for u in webhooks]
    out += [{"type": "command", "argv": argv} for argv in commands]
    out += [{"type": "builtin", "provider": p, "providers": [p]} for p in builtins]
    out += [{"type": "plugin", "name": n} for n in plugins]
    return out


class ConfigError(ValueError):
    pass


def callbacks_from_config(data: dict[str, Any], where: str) -> list[dict[str, Any]]:
    """`[[callbacks]]` tables: type = webhook | command | builtin | plugin, their target (url,
    argv, provider, name), optional `providers = [...]` to limit them, and for webhooks an
    optional `secret_env` naming the variable that holds their signing key."""
    out = []
    for i, raw in enumerate(data.get("callbacks", []), 1):
        at = f"{where}: callbacks[{i}]"
        if not isinstance(raw, dict) or raw.get("type") not in ("webhook", "command", "builtin", "plugin"):
            raise ConfigError(f"{at}: type must be webhook, command, builtin or plugin")
        need = {"webhook": "url", "command": "argv", "builtin": "provider", "plugin": "name"}[raw["type"]]
        allowed = {"type", need, "providers"} | ({"secret_env"} if raw["type"] == "webhook" else set())
        if need not in raw or set(raw) - allowed:
            raise ConfigError(f"{at}: a {raw['type']} callback takes {', '.join(sorted(allowed - {'type'}))}")
        if raw["type"] == "command" and not (isinstance(raw["argv"], list) and raw["argv"] and all(isinstance(a, str) for a in raw["argv"])):
            raise ConfigError(f"{at}: argv must be a list of strings (no shell)")
        if raw["type"] == "webhook" and not str(raw["url"]).startswith(("https://", "http://")):
            raise ConfigError(f"{at}: url must be http(s)")
        if raw["type"] == "builtin" and raw["provider"] not in BUILTIN:
            raise ConfigError(f"{at}: no built-in revoker for {raw['provider']!r} (known: {', '.join(BUILTIN)})")
        providers = raw.get("providers", [raw["provider"]] if raw["type"] == "builtin" else [])
        if not isinstance(providers, list) or not all(isinstance(p, str) for p in providers):
            raise ConfigError(f"{at}: providers must be a list of provider ids")
        out.append({**raw, "providers": providers} if providers else {k: v for k, v in raw.items() if k != "providers"})
    return out


def sign(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


async def flush(outbox: Outbox, *, progress: Callable[[str], None] | None = None) -> FlushReport:
    """One pass: claim what is due, deliver it grouped by callback, record the outcome."""
    report = FlushReport()
    claimed = outbox.claim()
    if not claimed:
        return report
    groups: dict[str, list[Claimed]] = defaultdict(list)
    for c in claimed:
        groups[c.callback_key].append(c)
    overrides = endpoint_overrides()
    # receivers the user configured, and endpoint overrides, may be local; nothing else
    explicit = [b[0].callback["url"] for b in groups.values() if b[0].callback["type"] == "webhook"]
    async with Client([*explicit, *overrides.values()], timeout=TIMEOUT) as client:
        await asyncio.gather(*(_with_retries(client, outbox, batch, overrides, report) for batch in groups.values()))
    return report


async def _with_retries(client: Client, outbox: Outbox, batch: list[Claimed], overrides, report: FlushReport) -> None:
    """Up to ATTEMPTS tries with exponential backoff and jitter; each delivery is written to the
    outbox as it happens, so a kill loses nothing; what still fails is one failed attempt of this
    flush (retried by a later one, or parked)."""
    todo = batch
    for attempt in range(ATTEMPTS):
        ok, failed = await _deliver(client, todo, overrides)
        if ok:
            outbox.delivered(ok)
            report.delivered += len(ok)
        # a receiver, a command or a plugin may echo the tokens it was given
        failed = [(part, scrub(error, [c.token for c in part])[:300]) for part, error in failed]
        todo = [c for part, error in failed for c in part]
        if not todo:
            return
        if attempt + 1 < ATTEMPTS:
            await asyncio.sleep(0.5 * 2**attempt * (0.5 + random.random()))
    for part, error in failed:
        outbox.failed(part, error)
        report.errors.append(error)
    report.failed += len(todo)


async def _deliver(client: Client, batch: list[Claimed], overrides: dict[str, str]):
    callback = batch[0].callback
    kind = callback["type"]
    if kind == "webhook":
        return await _webhook(client, callback["url"], batch, callback.get("secret_env", SECRET_ENV))
    if kind == "command":
        return await _each(batch, lambda c: _command(callback["argv"], c))
    if kind == "builtin":
        return await _builtin(client, callback["provider"], batch, overrides)
    if kind == "plugin":
        return await _plugin(callback["name"], batch)
    return [], [(batch, f"unknown callback type {kind!r}")]


def _payload(batch: list[Claimed]) -> list[dict[str, Any]]:
    return [{**c.item, "token": c.token} for c in batch]


async def _webhook(client: Client, url: str, batch: list[Claimed], secret_env: str):
    secret = os.environ.get(secret_env, "")
    if not secret:
        return [], [(batch, f"no signing secret: set {secret_env}")]
    ok, failed = [], []
    for i in range(0, len(batch), WEBHOOK_BATCH):
        part = batch[i : i + WEBHOOK_BATCH]
        body = json.dumps(_payload(part), separators=(",", ":")).encode()
        delivery = hashlib.sha256(("\0".join(c.leak_id for c in part) + "\0" + url).encode()).hexdigest()[:32]
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
                   "X-Leakscan-Signature": sign(secret.encode(), body), "X-Leakscan-Delivery": delivery}  # fmt: skip
        error = await client.deliver("POST", url, headers, body)
        (failed.append((part, error)) if error else ok.extend(part))
    return ok, failed


async def _each(batch: list[Claimed], one) -> tuple[list, list]:
    ok, failed = [], []
    for c in batch:
        error = await one(c)
        (failed.append(([c], error)) if error else ok.append(c))
    return ok, failed


async def _command(argv: list[str], c: Claimed) -> str | None:
    """The item as JSON on stdin; no shell, and the token never in argv or the environment."""
    env = {k: v for k, v in os.environ.items() if k != SECRET_ENV}
    try:
        proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
                                                    stderr=asyncio.subprocess.PIPE, env=env)  # fmt: skip
        _, err = await asyncio.wait_for(proc.communicate(json.dumps({**c.item, "token": c.token}).encode()), 60)
    except (OSError, asyncio.TimeoutError) as exc:
        return f"command failed to run: {exc}"[:300]
    if proc.returncode != 0:
        return f"command exited {proc.returncode}: {err.decode(errors='replace').strip()}"  # cut once scrubbed
    return None


async def _builtin(client: Client, provider: str, batch: list[Claimed], overrides: dict[str, str]):
    method, url, how = BUILTIN[provider]
    base = overrides.get(provider)
    if base:
        p, b = urlsplit(url), urlsplit(base)
        url = urlunsplit((b.scheme, b.netloc, b.path.rstrip("/") + p.path, "", ""))
    if how == "batch":
        ok, failed = [], []
        size = BUILTIN_BATCH[provider]
        for i in range(0, len(batch), size):
            part = batch[i : i + size]
            body = json.dumps({"credentials": [c.token for c in part]}).encode()
            error = await client.deliver(method, url, {"Content-Type": "application/json", "User-Agent": USER_AGENT}, body)
            (failed.append((part, error)) if error else ok.extend(part))
        return ok, failed

    async def one(c: Claimed) -> str | None:
        auth = {"PRIVATE-TOKEN": c.token} if provider == "gitlab" else {"Authorization": f"Bearer {c.token}"}
        return await client.deliver(method, url, {**auth, "User-Agent": USER_AGENT}, None)

    return await _each(batch, one)


async def _plugin(name: str, batch: list[Claimed]):
    """A `leakscan.revokers` entry point: a callable taking the items (tokens included) and
    returning true when they were handed over."""
    found = [ep for ep in entry_points(group="leakscan.revokers") if ep.name == name]
    if not found:
        return [], [(batch, f"no revoker plugin named {name!r} (entry-point group leakscan.revokers)")]
    try:
        result = found[0].load()(_payload(batch))
        if asyncio.iscoroutine(result):
            result = await result
    except Exception as exc:  # a plugin's failure must not lose the deliveries
        return [], [(batch, f"plugin {name} failed: {type(exc).__name__}: {exc}")]  # cut once scrubbed
    return (batch, []) if result else ([], [(batch, f"plugin {name} declined")])
