"""A real HTTP server on 127.0.0.1, in a thread of its own, standing in for a provider (or any
receiver) while the real `leakscan` runs in a subprocess. It records every request."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class Seen:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


class ServerThread:
    """An aiohttp handler served on 127.0.0.1 from a thread and event loop of its own, so the
    test can block on a subprocess meanwhile."""

    def __init__(self, handle: Callable[[web.Request], Awaitable[web.StreamResponse]], port: int = 0, *,
                 client_max_size: int = 1 << 20, auto_decompress: bool = True) -> None:  # fmt: skip
        self.handle, self.port = handle, port
        self.client_max_size, self.auto_decompress = client_max_size, auto_decompress

    def start(self) -> int:
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        async def start() -> None:
            app = web.Application(client_max_size=self.client_max_size)
            app.router.add_route("*", "/{tail:.*}", self.handle)
            # hanging handlers are cut at shutdown; bodies reach the handler as sent if asked
            self._runner = web.AppRunner(app, shutdown_timeout=0.5, auto_decompress=self.auto_decompress)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", self.port)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]
            ready.set()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(start())
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        ready.wait(10)
        return self.port

    def stop(self) -> None:
        async def stop() -> None:
            await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@dataclass
class StandIn:
    handler: Callable[[web.Request, bytes], Awaitable[web.StreamResponse]]
    requests: list[Seen] = field(default_factory=list)
    port: int = 0  # 0: any free port

    def __enter__(self) -> StandIn:
        async def handle(request: web.Request) -> web.StreamResponse:
            body = await request.read()
            self.requests.append(Seen(request.method, request.path, request.query_string, dict(request.headers), body))
            return await self.handler(request, body)

        self._server = ServerThread(handle, self.port)
        self.port = self._server.start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc) -> None:
        self._server.stop()


class RawServer:
    """A TCP server on 127.0.0.1 that speaks no HTTP: each connection's request head (up to the
    blank line) is recorded, `reply(head)` is written back and the connection closed. For
    answers no HTTP library would produce, and to count connections that should never come."""

    def __init__(self, reply: Callable[[bytes], bytes] = lambda head: b"") -> None:
        self.reply = reply
        self.heads: list[bytes] = []
        self.connections = 0
        self.port = 0

    def __enter__(self) -> RawServer:
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError, ConnectionError):
                head = b""
            self.heads.append(head)
            try:
                writer.write(self.reply(head))
                await writer.drain()
            except ConnectionError:
                pass
            writer.close()

        async def start() -> None:
            self._server = await asyncio.start_server(handle, "127.0.0.1", 0)
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(start())
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc) -> None:
        async def stop() -> None:
            self._server.close()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@contextmanager
def redirecting() -> Iterator[tuple[StandIn, StandIn]]:
    """(receiver, elsewhere): the receiver answers every request with a 302 to `elsewhere`,
    which accepts anything. A client that follows redirects shows up in `elsewhere.requests`."""

    async def accept(request, body):
        return web.Response(status=204)

    with StandIn(accept) as elsewhere:

        async def redirect(request, body):
            return web.Response(status=302, headers={"Location": f"{elsewhere.url}/stolen"})

        with StandIn(redirect) as receiver:
            yield receiver, elsewhere
