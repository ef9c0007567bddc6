from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from runyard.auth.config import Settings
from runyard.auth.main import create_app
from runyard.shared.testing import ServiceDatabase, running_app


@pytest.fixture
async def db(make_service_database: Any) -> ServiceDatabase:
    database: ServiceDatabase = await make_service_database("runyard.auth", "auth")
    return database


@pytest.fixture
def settings(db: ServiceDatabase, kafka_bootstrap: str) -> Settings:
    return Settings(
        environment="test",
        database_url=db.url,
        kafka_bootstrap_servers=kafka_bootstrap,
        run_workers=False,
    )


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[Any]:
    async with running_app(create_app(settings)) as c:
        yield c
