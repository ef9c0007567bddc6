"""``runyard.devstack.serve``: uvicorn with a once-a-second housekeeping tick, on a real socket."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import httpx
import pytest
import uvicorn

from runyard.devstack.dependencies import free_port
from runyard.devstack.serve import QuietServer, config_from_args
from runyard.devstack.service_processes import serve_argv
from runyard.devstack.services import SERVICES

APP = """
from fastapi import FastAPI


def create_app() -> FastAPI:
    app = FastAPI()

    @app.get("/ping")
    def ping() -> dict[str, str]:
        return {"pong": "yes"}

    return app
"""


@pytest.fixture
def app_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "quiet_app.py").write_text(APP)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "quiet_app:create_app"


def test_the_arguments_are_those_the_stack_passes() -> None:
    (gateway,) = (service for service in SERVICES if service.name == "gateway")
    argv = serve_argv(gateway, 8123)
    assert argv[1:3] == ["-m", "runyard.devstack.serve"]
    config = config_from_args([arg.replace(gateway.app, "pkg.main:create_app") for arg in argv[3:]])

    assert (config.app, config.factory, config.host, config.port) == (
        "pkg.main:create_app",
        True,
        "127.0.0.1",
        8123,
    )
    assert config.timeout_graceful_shutdown == 5
    # longer than the client pools keep an idle connection (the gateway's 4 s, httpx's 5 s)
    assert config.timeout_keep_alive == 75
    assert config.access_log is False
    assert config.proxy_headers is False


@pytest.mark.slow
async def test_an_idle_connection_outlives_the_client_pools_keep_alive(
    app_module: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection idle for 6 s (past uvicorn's default 5 s) still carries the next request."""
    monkeypatch.setattr(signal, "raise_signal", lambda _sig: None)
    port = free_port()
    (experiments,) = (service for service in SERVICES if service.name == "experiments")
    argv = [arg.replace(experiments.app, app_module) for arg in serve_argv(experiments, port)]
    config = config_from_args(argv[3:])
    config.log_level = "warning"
    server = QuietServer(config)
    serving = asyncio.create_task(server.serve())
    request = f"GET /ping HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    try:
        for _ in range(200):
            if server.started:
                break
            await asyncio.sleep(0.05)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for wait in (0.0, 6.0):
            await asyncio.sleep(wait)
            writer.write(request)
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
            assert head.startswith(b"HTTP/1.1 200"), head
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            assert await reader.readexactly(length) == b'{"pong":"yes"}'
        writer.close()
        server.handle_exit(signal.SIGTERM, None)
        await asyncio.wait_for(serving, timeout=30)
    finally:
        serving.cancel()
        await asyncio.gather(serving, return_exceptions=True)


@pytest.mark.slow
async def test_it_serves_ticks_once_a_second_and_stops_on_a_signal(
    app_module: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # uvicorn raises the signals it captured again once it stopped: not in the test process
    monkeypatch.setattr(signal, "raise_signal", lambda _sig: None)
    port = free_port()
    server = QuietServer(uvicorn.Config(app_module, factory=True, port=port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    try:
        async with httpx.AsyncClient(trust_env=False) as client:
            for _ in range(200):
                if server.started:
                    break
                await asyncio.sleep(0.05)
            response = await client.get(f"http://127.0.0.1:{port}/ping")
        assert response.json() == {"pong": "yes"}

        await asyncio.sleep(2.5)
        # uvicorn's own loop ticks ten times a second: about 25 by now
        assert 1 <= server.ticks <= 4

        server.handle_exit(signal.SIGTERM, None)
        await asyncio.wait_for(serving, timeout=30)
    finally:
        serving.cancel()
        await asyncio.gather(serving, return_exceptions=True)
    assert server.should_exit


def test_a_factory_that_cannot_be_imported_exits_with_uvicorns_startup_failure_code(
    tmp_path: Path,
) -> None:
    import subprocess

    argv = [sys.executable, "-m", "runyard.devstack.serve", "no_such_module:create_app"]
    result = subprocess.run(
        [*argv, "--port", str(free_port())],
        capture_output=True,
        timeout=60,
        cwd=tmp_path,
    )

    assert result.returncode != 0
    assert b"no_such_module" in result.stderr + result.stdout
