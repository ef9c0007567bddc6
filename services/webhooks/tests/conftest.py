from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from runyard.shared.db import create_engine, create_sessionmaker
from runyard.shared.testing import ServiceDatabase, running_app
from runyard.webhooks.config import Settings
from runyard.webhooks.context import new_http_session
from runyard.webhooks.main import create_app
from services.webhooks.tests.webhooks_helpers import (
    SIGNING_SECRETS,
    Receiver,
    verify_signed_requests,
)


@pytest.fixture
async def db(make_service_database: Any) -> ServiceDatabase:
    database: ServiceDatabase = await make_service_database("runyard.webhooks", "webhooks")
    return database


@pytest.fixture
def settings(db: ServiceDatabase, kafka_bootstrap: str) -> Settings:
    return Settings(
        environment="test",
        database_url=db.url,
        kafka_bootstrap_servers=kafka_bootstrap,
        run_workers=False,
        allow_private_targets=True,
        delivery_timeout_s=2.0,
    )


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[Any]:
    async with running_app(create_app(settings)) as c:
        yield c


@pytest.fixture
async def sessionmaker(db: ServiceDatabase) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(db.url, pool_size=2)
    try:
        yield create_sessionmaker(engine, schema="webhooks")
    finally:
        await engine.dispose()


@pytest.fixture
async def http(settings: Settings) -> AsyncIterator[aiohttp.ClientSession]:
    async with new_http_session(settings) as session:
        yield session


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    recorder = Receiver()
    app = web.Application(client_max_size=4 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", recorder.handle)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    recorder.base_url = f"http://{host}:{port}"
    recorder.port = port
    SIGNING_SECRETS.clear()
    try:
        yield recorder
    finally:
        recorder.release.set()
        await runner.cleanup()
    verify_signed_requests(recorder)
