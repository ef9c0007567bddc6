"""The job worker as the job tests run it: one claim, run to the end, called directly."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from runyard.experiments.config import Settings
from runyard.experiments.jobs import runner as job_runner
from runyard.shared.db import create_engine, create_sessionmaker


@pytest.fixture
async def make_worker(settings) -> AsyncIterator[Any]:
    engine = create_engine(settings.database_url, pool_size=2)
    sessionmaker = create_sessionmaker(engine, schema="experiments")

    def make(name: str = "worker-a", config: Settings | None = None) -> job_runner.Worker:
        return job_runner.Worker(sessionmaker, config or settings, name)

    yield make
    await engine.dispose()
