"""Pooled connections are pinged before use only after sitting idle (``ping_idle_connections``):
a busy pool spends no round trips on pings, an idle one survives a dropped server connection."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from runyard.shared.db import asyncpg_dsn, create_engine, ping_idle_connections
from runyard.shared.testing import _admin_execute, _with_db


@pytest.fixture
async def database_url(postgres_admin_url: str) -> str:
    name = f"t_ping_{uuid.uuid4().hex[:8]}"
    await _admin_execute(postgres_admin_url, f'CREATE DATABASE "{name}"')
    return _with_db(postgres_admin_url, name)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    made = create_async_engine(database_url, pool_size=1, max_overflow=0)
    ping_idle_connections(made, 0.2)
    try:
        yield made
    finally:
        await made.dispose()


async def backend_pid(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())


async def terminate(database_url: str, pid: int) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        assert await conn.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await conn.close()


def pings(engine: AsyncEngine) -> list[int]:
    """Counts the dialect's pings (asyncpg's is its own transaction, not a statement SQLAlchemy
    reports)."""
    calls: list[int] = []
    original = type(engine.sync_engine.dialect).do_ping

    def counting(self: Any, dbapi_connection: Any) -> bool:
        calls.append(1)
        return bool(original(self, dbapi_connection))

    engine.sync_engine.dialect.do_ping = counting.__get__(engine.sync_engine.dialect)  # type: ignore[method-assign]
    return calls


async def test_a_connection_back_a_moment_ago_is_handed_out_without_a_ping(
    engine: AsyncEngine,
) -> None:
    calls = pings(engine)
    for _ in range(20):
        await backend_pid(engine)
    assert calls == []


async def test_an_idle_connection_is_pinged_and_a_dead_one_replaced(
    engine: AsyncEngine, database_url: str
) -> None:
    calls = pings(engine)
    first = await backend_pid(engine)
    await terminate(database_url, first)
    await asyncio.sleep(0.3)
    second = await backend_pid(engine)  # pinged, found dead, the pool reconnected
    assert second != first
    assert calls == [1]


async def test_without_the_idle_time_a_dead_connection_fails_once_then_the_pool_recovers(
    engine: AsyncEngine, database_url: str
) -> None:
    first = await backend_pid(engine)
    await terminate(database_url, first)
    with pytest.raises(DBAPIError):  # taken at once: not pinged
        await backend_pid(engine)
    assert await backend_pid(engine) != first


def test_services_engines_ping_idle_connections_only() -> None:
    made = create_engine("postgresql+asyncpg://u:p@127.0.0.1:1/db")
    assert made.sync_engine.pool._pre_ping is False
    assert len(made.sync_engine.pool.dispatch.checkout) == 1
