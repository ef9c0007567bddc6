"""An ASGI app on real uvicorn on a loopback port, for tests that need real HTTP.

uvicorn's own loop notices ``should_exit`` on a 0.1 s tick and its shutdown sleeps another 0.1 s
before it looks at the connections: fine for a server that stops once, ~0.2-0.5 s of idle wait
per server when every test starts and stops a few of them. ``QuickServer`` waits on an event
instead of the tick and polls the closing connections every 5 ms; everything else (lifespan,
connection handling, graceful close of requests in flight) is uvicorn's.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import uvicorn

#: how often the shutdown looks whether the connections and tasks are done
_POLL_S = 0.005


class QuickServer(uvicorn.Server):
    """A uvicorn server that stops as soon as ``stop()`` is called."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self.should_exit = True
        self._stop.set()

    async def main_loop(self) -> None:
        await self._stop.wait()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()
        await asyncio.sleep(0)  # let each connection act on its shutdown
        try:
            async with asyncio.timeout(self.config.timeout_graceful_shutdown):
                # uvicorn keeps no event for "the last connection closed": poll
                while self.server_state.connections or self.server_state.tasks:  # noqa: ASYNC110
                    await asyncio.sleep(_POLL_S)
        except TimeoutError:
            for task in self.server_state.tasks:
                task.cancel(msg="Task cancelled, timeout graceful shutdown exceeded")
        for server in self.servers:
            await server.wait_closed()
        await self.lifespan.shutdown()


@contextlib.asynccontextmanager
async def serve(app: Any, port: int = 0, **config: Any) -> AsyncIterator[str]:
    """Serve ``app`` on 127.0.0.1 (``port``, a free one by default) with its lifespan; yield its
    base URL; stop it on exit. ``config`` goes to ``uvicorn.Config``."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    port = sock.getsockname()[1]
    options: dict[str, Any] = {
        "lifespan": "on",
        "log_level": "warning",
        "timeout_graceful_shutdown": 1,
        **config,
    }
    server = QuickServer(uvicorn.Config(app, **options))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("server did not start")
            await asyncio.sleep(0.005)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
        await task
        sock.close()
