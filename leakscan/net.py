"""The one outbound HTTP client. Verification, revocation deliveries and `serve --notify` all
send through `Client`; nothing else opens an HTTP connection to a place a scan found or a
payload named.

* No redirect is ever followed: a 3xx is an answer like any other.
* An origin (host *and* port) the operator named is *explicit*: the `explicit` URLs a `Client`
  is made with — endpoint overrides (`LEAKSCAN_ENDPOINT_<PROVIDER>`), `--notify`,
  `--revoke-webhook` and revocation-config webhooks. Only an explicit origin may be private or
  loopback, or spoken to over plain http. Every other request goes over https to public
  addresses only, whatever a detector file or scanned content says.
* The check is made on the address connected to: the resolver drops every non-public address
  of a non-explicit origin and aiohttp connects only to what it returns, so DNS rebinding cannot
  slip through; IP literals, which aiohttp does not resolve, are checked before the request.
* Answers are read up to a bound and never inflated (compressed answers stay compressed, so a
  decompression bomb is just bytes that are not the expected JSON).
* Failures come out as `NetError` with a one-line reason (`describe`): what went wrong, not the
  URL. Callers still render it with `textsafe.scrub(reason, secrets)` before anyone sees it: a
  malformed answer may echo what was sent.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver
from aiohttp.resolver import DefaultResolver
from yarl import URL

from .textsafe import scrub

TIMEOUT = 10.0
MAX_ANSWER = 1 << 20
USER_AGENT = "leakscan-verify/0.1 (+secret leak verification)"


class NetError(Exception):
    """A request that failed; the message is one line and names no URL path or query."""


class Refused(NetError):
    """A request leakscan will not make (SSRF guard)."""


class _RefusedAddress(OSError):
    # raised inside the resolver: aiohttp wraps resolver OSErrors, `Client` unwraps this one
    pass


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes  # at most the request's `limit` bytes


def endpoint_overrides(config: dict[str, str] | None = None) -> dict[str, str]:
    """provider id → base URL, from LEAKSCAN_ENDPOINT_<PROVIDER> (and a config mapping)."""
    out = dict(config or {})
    for key, value in os.environ.items():
        if key.startswith("LEAKSCAN_ENDPOINT_") and value:
            out[key[len("LEAKSCAN_ENDPOINT_") :].lower().replace("_", "-")] = value
    return out


def origin(url: str | URL) -> tuple[str, int] | None:
    """(host, port) as aiohttp will connect to them (yarl's normalisation, default ports
    filled in); None for a URL without a host."""
    try:
        u = url if isinstance(url, URL) else URL(url)
    except (ValueError, TypeError):
        return None
    if not u.host or u.port is None:
        return None
    return u.host, u.port


def is_public(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is loopback, whatever the Python version says
    return ip.is_global and not ip.is_multicast


class GuardedResolver(AbstractResolver):
    """Resolves like aiohttp does, then drops every non-public address unless (host, port) is
    an explicit origin. aiohttp connects only to what this returns."""

    def __init__(self, explicit: set[tuple[str, int]]) -> None:
        self._inner = DefaultResolver()
        self._explicit = explicit

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[dict[str, Any]]:
        infos = await self._inner.resolve(host, port, family)
        if (host, port) in self._explicit:
            return infos
        allowed = [i for i in infos if is_public(i["host"])]
        if not allowed:
            raise _RefusedAddress(f"refused to connect to {host}:{port}: it resolves only to private, loopback or "
                                  "link-local addresses")  # fmt: skip
        return allowed

    async def close(self) -> None:
        await self._inner.close()


class Client:
    """`async with Client(explicit_urls) as c: answer = await c.request("GET", url)`."""

    def __init__(self, explicit: Iterable[str] = (), *, timeout: float = TIMEOUT, user_agent: str = USER_AGENT) -> None:
        self.explicit = {o for u in explicit if (o := origin(u)) is not None}
        self.timeout = timeout
        self.user_agent = user_agent
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Client:
        connector = aiohttp.TCPConnector(resolver=GuardedResolver(self.explicit), limit=0, ttl_dns_cache=60)
        self._session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=self.timeout),
                                              headers={"User-Agent": self.user_agent, "Accept-Encoding": "identity"},
                                              auto_decompress=False)  # fmt: skip
        return self

    async def __aexit__(self, *exc) -> None:
        if self._session is not None:
            await self._session.close()

    def check(self, url: str) -> URL:
        """The URL as it will be requested, or `Refused`."""
        try:
            u = URL(url)
        except (ValueError, TypeError):
            raise Refused("refused: not a URL") from None
        where = origin(u)
        if u.scheme not in ("http", "https") or where is None:
            raise Refused(f"refused: {u.scheme or 'no scheme'}:// URL without a host" if where is None
                          else f"refused: {u.scheme}:// (only http and https)")  # fmt: skip
        if where in self.explicit:
            return u
        if u.scheme != "https":
            raise Refused(f"refused: http:// to {where[0]}:{where[1]}, an address the operator did not give (https only)")
        try:
            ipaddress.ip_address(where[0].split("%", 1)[0])
        except ValueError:
            return u  # a name: the resolver guards it
        if not is_public(where[0]):
            raise Refused(f"refused: {where[0]} is a private, loopback or link-local address")
        return u

    async def request(self, method: str, url: str, *, headers: Mapping[str, str] | None = None,
                      data: bytes | None = None, limit: int = MAX_ANSWER) -> Answer:  # fmt: skip
        assert self._session is not None, "use Client as an async context manager"
        u = self.check(url)
        try:
            async with self._session.request(method, u, headers=dict(headers or {}), data=data,
                                             allow_redirects=False) as resp:  # fmt: skip
                body = await resp.content.read(limit)
                return Answer(resp.status, resp.headers, body)
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, _RefusedAddress):
                raise Refused(str(exc.os_error)) from None
            raise NetError(describe(exc)) from None
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
            raise NetError(describe(exc)) from None

    async def deliver(self, method: str, url: str, headers: Mapping[str, str] | None = None,
                      data: bytes | None = None) -> str | None:  # fmt: skip
        """For receivers (webhooks, notifications, revokers): None when they answered 2xx, else
        why not, one line. Not scrubbed of secrets: the caller knows which to strip."""
        try:
            answer = await self.request(method, url, headers=headers, data=data, limit=64 << 10)
        except NetError as exc:
            return f"cannot deliver: {exc}"
        if 200 <= answer.status < 300:
            return None
        return f"HTTP {answer.status}" + (" (a redirect: not followed)" if 300 <= answer.status < 400 else "")


def describe(exc: BaseException) -> str:
    """One line on why a request failed, for people: the kind of failure, never the URL (the
    parser's complaint may quote the answer, hence scrub: URLs cut, control characters escaped).
    Not shortened: a cut could leave half a secret that the caller's scrub would not recognise;
    callers shorten after scrubbing with the secrets they know."""
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    if isinstance(exc, aiohttp.ClientConnectorError):
        text = f"cannot connect: {exc.os_error.strerror or exc.os_error}" if exc.os_error else "cannot connect"
    elif isinstance(exc, aiohttp.ServerDisconnectedError):
        text = "the server closed the connection without answering"
    elif isinstance(exc, aiohttp.ClientResponseError):
        text = f"malformed HTTP answer: {' '.join(str(exc.message).split())}"
    elif isinstance(exc, aiohttp.ClientPayloadError):
        text = f"malformed HTTP body: {' '.join(str(exc).split())}"
    else:
        text = f"{type(exc).__name__}: {' '.join(str(exc).split())}".rstrip(": ")
    return scrub(text)
