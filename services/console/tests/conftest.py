from __future__ import annotations

from collections.abc import AsyncIterator
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
