"""uvicorn with a prompt, bounded shutdown (the API server and the agent API).

uvicorn's graceful shutdown stops accepting, asks each connection to close, then waits for
all of them (up to `timeout_graceful_shutdown`). Two things made that wait last: held long
polls, which `on_shutdown` ends at once (the server's notifier), and closed keep-alive TLS
connections, which stay in uvicorn's set until the peer answers the TLS close_notify — an idle
pooled client (an agent's, the server's agent proxy) never reads, so each such connection
held shutdown for the whole timeout. A connection that has been closing for `LINGER` seconds
(its last bytes long flushed on the wire) is aborted instead. Streams (logs --follow, exec)
are still cut by `timeout_graceful_shutdown`, the backstop.

Idle keep-alive: both servers keep an idle connection `KEEP_ALIVE` seconds, longer than their
clients' pools keep one (httpx: 5 s). With uvicorn's default (also 5 s) a pooled client could
send a request on a connection the server was closing at that moment, and get "Server
disconnected without sending a response" (a 502 "agent unreachable" through the server's agent
proxy; `make soak` found it). The closing side must be the client's.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import uvicorn

LINGER = 0.2  # seconds a closing connection may wait for its peer's TLS close_notify
KEEP_ALIVE = 30  # seconds an idle connection is kept (> the clients' pool expiry, 5 s)


class PromptServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config,
                 on_shutdown: Callable[[], None] | None = None) -> None:
        super().__init__(config)
        self.on_shutdown = on_shutdown

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self.on_shutdown is not None:
            self.on_shutdown()  # before uvicorn starts waiting for the requests it holds
        reaper = asyncio.create_task(self._abort_lingering())
        try:
            await super().shutdown(sockets)
        finally:
            reaper.cancel()

    async def _abort_lingering(self, pause: float = 0.05) -> None:
        closing_since: dict[int, float] = {}
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(pause)
            for conn in list(self.server_state.connections):
                transport = getattr(conn, "transport", None)
                if transport is None or not transport.is_closing():
                    continue
                since = closing_since.setdefault(id(conn), loop.time())
                if loop.time() - since >= LINGER:
                    transport.abort()
                    # a TLS shutdown begun earlier (keep-alive timeout) does not report the
                    # abort to the protocol: uvicorn would keep waiting for the closed socket
                    self.server_state.connections.discard(conn)
