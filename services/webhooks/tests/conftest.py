from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from runyard.shared.db import create_engine, create_sessionmaker
from runyard.shared.testing import ServiceDatabase, running_app
from runyard.webhooks.config import Settings
from runyard.webhooks.main import create_app
from runyard.webhooks.workers import new_http_session


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


@dataclass
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A real HTTP server on 127.0.0.1 that records every request.

    ``statuses`` maps a path to the status it answers (default 200); a 3xx answers with a
    ``Location`` pointing at ``/redirected``.
    """

    base_url: str = ""
    requests: list[ReceivedRequest] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def received(self, path: str) -> list[ReceivedRequest]:
        return [r for r in self.requests if r.path == path]

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(
            ReceivedRequest(
                request.method, request.path, dict(request.headers), await request.read()
            )
        )
        self.arrived.set()
        status = self.statuses.get(request.path, 200)
        headers = {"Location": self.url("/redirected")} if 300 <= status < 400 else None
        return web.Response(status=status, text=f"answered {status}", headers=headers)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    recorder = Receiver()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", recorder.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    recorder.base_url = f"http://{host}:{port}"
    try:
        yield recorder
    finally:
        await runner.cleanup()
