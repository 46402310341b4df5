"""A real HTTP server on 127.0.0.1, in a thread of its own, standing in for a provider (or any
receiver) while the real `leakscan` runs in a subprocess. It records every request."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from aiohttp import web

from hubstand import Seen, ServerThread  # they ship with the Hub stand-in, in fixtures/


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
