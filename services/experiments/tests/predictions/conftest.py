"""Fixtures of the prediction log tests: a model version made straight in the database (the
registry's own API is tested in tests/registry), a session for the use cases and workers."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import pytest

from runyard.shared.db import asyncpg_dsn, create_engine, create_sessionmaker
from runyard.shared.testing import ServiceDatabase


async def make_version(
    db: ServiceDatabase,
    owner_id: uuid.UUID,
    name: str = "pump-cnn",
    number: int = 1,
    *,
    input_schema: dict[str, Any] | None = None,
    archived: bool = False,
) -> dict[str, Any]:
    conn = await asyncpg.connect(asyncpg_dsn(db.admin_url))
    try:
        model_id = await conn.fetchval(
            "SELECT id FROM experiments.registered_models WHERE owner_id = $1 AND name = $2",
            owner_id,
            name,
        )
        if model_id is None:
            model_id = uuid.uuid4()
            await conn.execute(
                "INSERT INTO experiments.registered_models (id, owner_id, name, last_version) "
                "VALUES ($1, $2, $3, $4)",
                model_id,
                owner_id,
                name,
                number,
            )
        version_id = uuid.uuid4()
        await conn.execute(
            "INSERT INTO experiments.model_versions (id, model_id, owner_id, version, "
            "artifact_path, status, input_schema, archived_at) "
            "VALUES ($1, $2, $3, $4, 'model', 'ready', $5::jsonb, "
            "CASE WHEN $6 THEN now() END)",
            version_id,
            model_id,
            owner_id,
            number,
            None if input_schema is None else json.dumps(input_schema),
            archived,
        )
    finally:
        await conn.close()
    return {"model_id": model_id, "version_id": version_id, "name": name, "version": number}


def url(version: dict[str, Any], suffix: str = "") -> str:
    return f"/api/v1/models/{version['name']}/versions/{version['version']}/predictions{suffix}"


@pytest.fixture
async def sessionmaker(db: ServiceDatabase) -> AsyncIterator[Any]:
    engine = create_engine(db.url, pool_size=2)
    try:
        yield create_sessionmaker(engine, schema="experiments")
    finally:
        await engine.dispose()


@pytest.fixture
def new_version(db: ServiceDatabase) -> Callable[..., Any]:
    async def make(owner_id: uuid.UUID, name: str = "pump-cnn", number: int = 1, **kw: Any) -> Any:
        return await make_version(db, owner_id, name, number, **kw)

    return make
