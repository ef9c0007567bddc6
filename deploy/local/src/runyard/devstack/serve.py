"""``python -m runyard.devstack.serve APP --host H --port P``: how the local stack runs a service.

It is uvicorn with one change: the server's housekeeping tick (the ``date`` header, the exit
flag) runs once a second instead of ten times. uvicorn wakes an idle process ten times a second
for it; measured 0.0017 cores per idle process on the development machine, a third of what the
whole resting stack may spend once six processes do it. A stop signal still ends the wait at
once, so stopping is not slower. The containers and Kubernetes run plain ``uvicorn``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Sequence
from types import FrameType

import uvicorn

#: uvicorn's own exit code when the application failed to start
STARTUP_FAILURE = 3


class QuietServer(uvicorn.Server):
    """``uvicorn.Server`` whose main loop ticks every ``tick_s`` seconds (uvicorn: 0.1)."""

    tick_s = 1.0

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._exit_asked: asyncio.Event | None = None
        #: how many times the main loop ticked (tests look at it)
        self.ticks = 0

    async def main_loop(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._exit_asked = asyncio.Event()
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            # uvicorn counts tenths of a second: a multiple of 10 refreshes the date header
            counter = (counter + 10) % 864000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._exit_asked.wait(), self.tick_s)
            self.ticks += 1
            should_exit = await self.on_tick(counter)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        loop, asked = self._loop, self._exit_asked
        if loop is not None and asked is not None and not loop.is_closed():
            loop.call_soon_threadsafe(asked.set)


def config_from_args(argv: Sequence[str] | None = None) -> uvicorn.Config:
    parser = argparse.ArgumentParser(prog="python -m runyard.devstack.serve")
    parser.add_argument("app", help="module:factory, called to build the ASGI app")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--no-proxy-headers", action="store_true")
    parser.add_argument("--timeout-graceful-shutdown", type=int, default=None)
    parser.add_argument("--timeout-keep-alive", type=int, default=5)
    args = parser.parse_args(argv)
    return uvicorn.Config(
        args.app,
        factory=True,
        host=args.host,
        port=args.port,
        access_log=False,
        proxy_headers=not args.no_proxy_headers,
        timeout_graceful_shutdown=args.timeout_graceful_shutdown,
        timeout_keep_alive=args.timeout_keep_alive,
    )


def main(argv: Sequence[str] | None = None) -> int:
    server = QuietServer(config_from_args(argv))
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    return 0 if server.started else STARTUP_FAILURE


if __name__ == "__main__":
    sys.exit(main())
