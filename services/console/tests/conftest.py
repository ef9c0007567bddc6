from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from runyard.console.config import Settings
from runyard.console.main import create_app
from runyard.shared.testing import running_app


@pytest.fixture
def settings(kafka_bootstrap: str) -> Settings:
    """Nothing listens on the API URL: these tests stay inside the console (the whole-stack
    ones are in tests/console)."""
    return Settings(
        environment="test",
        api_url="http://127.0.0.1:9",
        kafka_bootstrap_servers=kafka_bootstrap,
        live_enabled=False,
    )


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[Any]:
    async with running_app(create_app(settings)) as c:
        yield c


@contextlib.contextmanager
def stand_in_api(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """An HTTP server on a free port answering with ``handler`` in a thread, standing in for
    the API; its base URL. Shut down on exit."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
