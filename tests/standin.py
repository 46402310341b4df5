"""A real HTTP server on 127.0.0.1, in a thread of its own, standing in for a provider (or any
receiver) while the real `leakscan` runs in a subprocess. It records every request."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
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
