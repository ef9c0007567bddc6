"""Helpers the experiments tests share: ``from services.experiments.tests.experiments_helpers
import ...`` (pytest's importlib mode names test modules by their path from the repository's
root, so this package path resolves without touching ``sys.path``)."""

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


async def write_epoch_events(db: ServiceDatabase) -> int:
    """What the ``epoch-events`` worker does (the tests' apps run no workers), with no window:
    the pending ``experiment.epochs_logged`` events go to the outbox. Returns how many."""
    from runyard.experiments.tracking.service import epoch_events
    from runyard.shared.db import create_engine, create_sessionmaker

    engine = create_engine(db.url, pool_size=1)
    try:
        sessionmaker = create_sessionmaker(engine, schema="experiments")
        async with sessionmaker() as session, session.begin():
            return await epoch_events.write_due(session, window_s=0)
    finally:
        await engine.dispose()


async def outbox(db: ServiceDatabase) -> list[dict[str, Any]]:
    """The CloudEvents in the outbox, oldest first, once the pending ``epochs_logged`` events
    are written (as the ``epoch-events`` worker would by then)."""
    await write_epoch_events(db)
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


async def deliver_own_events(db: ServiceDatabase) -> int:
    """What the service's consumer does with the events its outbox published: every outbox
    event of a consumed topic, in order, through the shared inbox consumer (events handled
    before are skipped by the inbox). Returns how many were new."""
    from runyard.experiments.consumers import handlers
    from runyard.shared.db import create_engine, create_sessionmaker
    from runyard.shared.events import parse_event
    from runyard.shared.inbox import EventConsumer
    from runyard.shared.testing.events import as_record

    rows = await fetch(db, "SELECT id, topic, payload FROM experiments.outbox ORDER BY id")
    consumed = handlers()
    records = [
        as_record(parse_event(r["payload"])[0], offset=r["id"])
        for r in rows
        if r["topic"] in consumed
    ]
    if not records:
        return 0
    engine = create_engine(db.url, pool_size=1)
    try:
        consumer = EventConsumer(
            sessionmaker=create_sessionmaker(engine, schema="experiments"),
            producer=None,  # type: ignore[arg-type]
            bootstrap_servers=[],
            group_id="experiments",
            schema="experiments",
            service="experiments",
            handlers=consumed,
        )
        outcomes = await consumer.process_batch(records)
    finally:
        await engine.dispose()
    return outcomes.count("processed")
