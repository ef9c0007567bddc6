from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from runyard.experiments.config import Settings
from runyard.experiments.main import create_app
from runyard.shared.testing import ServiceDatabase, running_app
from services.experiments.tests.experiments_helpers import Caller, caller


@pytest.fixture
async def db(make_service_database: Any) -> ServiceDatabase:
    database: ServiceDatabase = await make_service_database("runyard.experiments", "experiments")
    return database


@pytest.fixture
def settings(db: ServiceDatabase, kafka_bootstrap: str, tmp_path: Path) -> Settings:
    return Settings(
        environment="test",
        database_url=db.url,
        kafka_bootstrap_servers=kafka_bootstrap,
        run_workers=False,
        data_dir=str(tmp_path / "data"),
    )


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[Any]:
    async with running_app(create_app(settings)) as c:
        yield c


@pytest.fixture
def alice() -> Caller:
    return caller()


@pytest.fixture
def bob() -> Caller:
    return caller()


@pytest.fixture
def viewer() -> Caller:
    return caller("viewer")


@pytest.fixture
def admin() -> Caller:
    return caller("admin")
