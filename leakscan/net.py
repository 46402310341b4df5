"""The one outbound HTTP client. Verification, revocation deliveries, `serve --notify` and LFS
downloads all send through `Client`; nothing else opens an HTTP connection to a place a scan found or a
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
* A private deployment (a self-hosted Hub, the loopback stand-in) is named by the operator:
  `private_network=True` lets a client reach private addresses and plain http for every origin,
  for the hosts such an endpoint names (its LFS storage), never for hosts from scanned content.
* `Session` is the blocking face of the same client, for code that runs in scan workers (LFS
  downloads): a private event loop per process, answers streamed and read in bounded pieces.
* Failures come out as `NetError` with a one-line reason (`describe`): what went wrong, not the
  URL. Callers still render it with `textsafe.scrub(reason, secrets)` before anyone sees it: a
  malformed answer may echo what was sent.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import threading
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

    def __init__(self, explicit: set[tuple[str, int]], private_network: bool = False) -> None:
        self._inner = DefaultResolver()
        self._explicit = explicit
        self._private_network = private_network

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[dict[str, Any]]:
        infos = await self._inner.resolve(host, port, family)
        if (host, port) in self._explicit or self._private_network:
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

    def __init__(self, explicit: Iterable[str] = (), *, timeout: float | None = TIMEOUT, user_agent: str = USER_AGENT,
                 read_timeout: float | None = None, private_network: bool = False) -> None:  # fmt: skip
        """`timeout` bounds a whole request (None: unbounded, for downloads, which bound their
        own time); `read_timeout` each connect and socket read."""
        self.explicit = {o for u in explicit if (o := origin(u)) is not None}
        self.timeout = timeout
        self.read_timeout = read_timeout
        self.private_network = private_network
        self.user_agent = user_agent
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Client:
        connector = aiohttp.TCPConnector(resolver=GuardedResolver(self.explicit, self.private_network), limit=0,
                                         ttl_dns_cache=60)  # fmt: skip
        timeout = aiohttp.ClientTimeout(total=self.timeout, sock_connect=self.read_timeout, sock_read=self.read_timeout)
        self._session = aiohttp.ClientSession(connector=connector, timeout=timeout,
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
        if where in self.explicit or self.private_network:
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
        resp = await self.open(method, url, headers=headers, data=data)
        try:
            with _failures():
                body = await resp.content.read(limit)
            return Answer(resp.status, resp.headers, body)
        finally:
            resp.release()

    async def open(self, method: str, url: str, *, headers: Mapping[str, str] | None = None,
                   data: bytes | None = None) -> aiohttp.ClientResponse:  # fmt: skip
        """The answer with its body unread (the caller reads it in bounded pieces and releases
        it); `Refused` or `NetError` when there is none."""
        assert self._session is not None, "use Client as an async context manager"
        u = self.check(url)
        with _failures():
            return await self._session.request(method, u, headers=dict(headers or {}), data=data, allow_redirects=False)

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


def resolves_private(host: str) -> bool:
    """Whether a name the operator gave resolves to a private, loopback or link-local address
    (a self-hosted deployment); False when it does not resolve."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return False
    return any(not is_public(str(info[4][0])) for info in infos)


class _failures:
    """aiohttp's and the resolver's failures as `Refused`/`NetError` with a one-line reason."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, tb) -> bool:
        if exc is None:
            return False
        if isinstance(exc, aiohttp.ClientConnectorError) and isinstance(exc.os_error, _RefusedAddress):
            raise Refused(str(exc.os_error)) from None
        if isinstance(exc, (aiohttp.ClientError, OSError, asyncio.TimeoutError)):
            raise NetError(describe(exc)) from None
        return False


_INHERITED: list = []  # see `Session.close`


class Session:
    """`Client` for blocking code (LFS downloads, huggingface_hub's requests): an event loop and
    client per thread, made in the process that uses them (scan workers are forked: a loop
    never crosses a fork, and threads never share one).

        with Session([endpoint]) as http, http.open("GET", url) as answer:
            answer.status, answer.headers, answer.read(1 << 20)
    """

    def __init__(self, explicit: Iterable[str] = (), **client_options: Any) -> None:
        self._explicit = list(explicit)
        self._options = client_options
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: list[tuple[int, asyncio.AbstractEventLoop, Client]] = []  # (pid, loop, client) per thread

    def _run(self, coro):
        local = self._local
        if getattr(local, "pid", None) != os.getpid():
            local.loop, local.pid = asyncio.new_event_loop(), os.getpid()
            local.client = local.loop.run_until_complete(Client(self._explicit, **self._options).__aenter__())
            with self._lock:
                self._open.append((local.pid, local.loop, local.client))
        return local.loop.run_until_complete(coro)

    def check(self, url: str) -> None:
        """`Refused` if `url` may not be asked at all (its address is checked again on connect)."""
        Client(self._explicit, private_network=self._options.get("private_network", False)).check(url)

    def open(self, method: str, url: str, headers: Mapping[str, str] | None = None,
             data: bytes | None = None) -> Stream:  # fmt: skip
        async def opening() -> aiohttp.ClientResponse:
            return await self._local.client.open(method, url, headers=headers, data=data)

        return Stream(self, self._run(opening()))

    def close(self) -> None:
        """Closes the clients of every thread (of this process) once none is in use. Those a
        forked process inherited run on its parent's loops: they can be neither closed here nor
        let go (aiohttp would report each unclosed, on the child's stderr, when huggingface_hub
        closes its session after a fork), so they are kept until the process ends."""
        with self._lock:
            mine = [(loop, client) for pid, loop, client in self._open if pid == os.getpid()]
            _INHERITED.extend(entry for entry in self._open if entry[0] != os.getpid())
            self._open = []
        for loop, client in mine:
            loop.run_until_complete(client.__aexit__(None, None, None))
            loop.close()
        self._local = threading.local()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Stream:
    """An answer read in pieces: `status`, `headers`, `read(n)` (b"" at the end)."""

    def __init__(self, session: Session, resp: aiohttp.ClientResponse) -> None:
        self._session, self._resp = session, resp
        self.status, self.headers = resp.status, resp.headers

    def read(self, n: int) -> bytes:
        with _failures():
            return self._session._run(self._resp.content.read(n))

    def close(self) -> None:
        self._resp.release()

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


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


def httpx_client(explicit: Iterable[str], **client_options: Any):
    """An httpx2 client (huggingface_hub's HTTP library, for its `set_client_factory`) whose
    every request is made by a guarded `Session`: the Hub's REST calls meet the same rules as
    verification and downloads (public https addresses unless the operator named the origin,
    answers never inflated). httpx follows huggingface_hub's redirects hop by hop, as its own
    client does (downloads through `/resolve/` need them), each hop a request through the
    guard."""
    import httpx2

    session = Session(explicit, **client_options)

    class Body(httpx2.SyncByteStream):
        def __init__(self, stream: Stream) -> None:
            self.stream = stream

        def __iter__(self):
            while chunk := self.stream.read(1 << 16):
                yield chunk

        def close(self) -> None:
            self.stream.close()

    class Guarded(httpx2.BaseTransport):
        def handle_request(self, request: httpx2.Request) -> httpx2.Response:
            headers = {k: v for k, v in request.headers.items() if k.lower() not in ("accept-encoding", "host")}
            try:
                stream = session.open(request.method, str(request.url), headers, request.read() or None)
            except NetError as exc:
                raise httpx2.ConnectError(str(exc), request=request) from None
            return httpx2.Response(stream.status, headers=list(stream.headers.items()), stream=Body(stream),
                                   request=request)  # fmt: skip

        def close(self) -> None:
            session.close()

    return httpx2.Client(transport=Guarded(), follow_redirects=True, timeout=None)
