"""Helpers the experiments tests share (imported by name: pytest runs with importlib mode)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from runyard.shared.db import asyncpg_dsn
from runyard.shared.testing import ServiceDatabase, identity_headers


@dataclass(frozen=True)
class Caller:
    """Someone calling the API through the gateway (which sets the identity headers)."""

    id: uuid.UUID
    role: str
    headers: dict[str, str]


def caller(role: str = "user") -> Caller:
    user_id = uuid.uuid4()
    return Caller(user_id, role, identity_headers(user_id, role))


async def fetch(db: ServiceDatabase, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(asyncpg_dsn(db.admin_url))
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


async def outbox(db: ServiceDatabase) -> list[dict[str, Any]]:
    """The CloudEvents in the outbox, oldest first."""
    rows = await fetch(db, "SELECT payload FROM experiments.outbox ORDER BY id")
    return [json.loads(r["payload"]) for r in rows]


async def event_types(db: ServiceDatabase) -> list[str]:
    return [event["type"] for event in await outbox(db)]


async def new_experiment(
    client: Any, who: Caller, name: str | None = None, **fields: Any
) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/experiments",
        json={"name": name or f"exp-{uuid.uuid4().hex[:8]}", **fields},
        headers=who.headers,
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def act(client: Any, who: Caller, experiment_id: str, action: str, **body: Any) -> Any:
    return await client.post(
        f"/api/v1/experiments/{experiment_id}/{action}", json=body or None, headers=who.headers
    )
