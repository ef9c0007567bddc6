from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import text

from runyard.shared.db import create_engine, create_sessionmaker
from runyard.shared.migrations import create_outbox_and_inbox
from runyard.shared.testing import _admin_execute, _with_db
from shared.tests.pipeline import SCHEMA, PipelineDb


@pytest.fixture
async def pipeline_db(postgres_admin_url: str) -> AsyncIterator[PipelineDb]:
    """A fresh database with a ``pipeline`` schema holding outbox, inbox and an ``effects`` table."""
    name = f"t_pipeline_{uuid.uuid4().hex[:10]}"
    await _admin_execute(postgres_admin_url, f'CREATE DATABASE "{name}"')
    url = _with_db(postgres_admin_url, name)
    engine = create_engine(url, pool_size=5)
    async with engine.begin() as conn:
        await conn.execute(text(f"CREATE SCHEMA {SCHEMA}"))
        await conn.run_sync(create_outbox_and_inbox, SCHEMA)
        await conn.execute(
            text(f"CREATE TABLE {SCHEMA}.effects (event_id text NOT NULL, note text NOT NULL)")
        )
    try:
        yield PipelineDb(engine, create_sessionmaker(engine, schema=SCHEMA), url)
    finally:
        await engine.dispose()
        await _admin_execute(postgres_admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def producer(kafka_bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    p = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await p.start()
    try:
        yield p
    finally:
        await p.stop()
