from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from runyard.auth.config import Settings
from runyard.auth.main import create_app
from runyard.shared.testing import ServiceDatabase, running_app
from services.auth.tests.auth_helpers import FakeClock

#: argon2id at its cheapest, so tests spend no time hashing. test_passwords.py proves the
#: production defaults are OWASP's.
FAST_HASHING: dict[str, Any] = {
    "password_hash_memory_kib": 8,
    "password_hash_time_cost": 1,
    "password_hash_parallelism": 1,
}


@pytest.fixture
async def db(make_service_database: Any) -> ServiceDatabase:
    database: ServiceDatabase = await make_service_database("runyard.auth", "auth")
    return database


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def settings(db: ServiceDatabase, kafka_bootstrap: str) -> Settings:
    return Settings(
        environment="test",
        database_url=db.url,
        kafka_bootstrap_servers=kafka_bootstrap,
        run_workers=False,
        **FAST_HASHING,
    )


@pytest.fixture
def app(settings: Settings, clock: FakeClock) -> Any:
    """The service under test; once ``client`` runs it, ``app.state.runtime`` is its runtime
    (for running a worker step)."""
    return create_app(settings, clock=clock)


@pytest.fixture
async def client(app: Any) -> AsyncIterator[Any]:
    async with running_app(app) as c:
        yield c
