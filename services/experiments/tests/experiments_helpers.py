"""Helpers the experiments tests share: ``from services.experiments.tests.experiments_helpers
import ...`` (pytest's importlib mode names test modules by their path from the repository's
root, so this package path resolves without touching ``sys.path``)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg

from runyard.shared.db import asyncpg_dsn
from runyard.shared.testing import ServiceDatabase, identity_headers

T = TypeVar("T")


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


async def in_session(db: ServiceDatabase, work: Callable[[Any], Awaitable[T]]) -> T:
    """``work(session)`` in one transaction of the service's database, as a worker runs it."""
    from runyard.shared.db import create_engine, create_sessionmaker

    engine = create_engine(db.url, pool_size=1)
    try:
        sessionmaker = create_sessionmaker(engine, schema="experiments")
        async with sessionmaker() as session, session.begin():
            return await work(session)
    finally:
        await engine.dispose()


async def write_epoch_events(db: ServiceDatabase) -> int:
    """What the ``epoch-events`` worker does (the tests' apps run no workers), with no window:
    the pending ``experiment.epochs_logged`` events go to the outbox. Returns how many."""
    from runyard.experiments.tracking.service import epoch_events

    return await in_session(db, lambda session: epoch_events.write_due(session, window_s=0))


async def fold_summaries(db: ServiceDatabase) -> int:
    """What the ``epoch-events`` worker does first for each run (the tests' apps run no
    workers): the summaries the MLflow API's SQL path left owed written into the runs' rows and
    history blocks, the pending events kept. Returns how many runs were folded."""
    from runyard.experiments.tracking.service import epoch_events

    return await in_session(db, epoch_events.fold_owned)


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


#: the metrics training_runs has columns for; the history summary's block sizes (levels 0-4)
RUN_COLUMNS = ("train_loss", "val_loss", "train_accuracy", "val_accuracy", "learning_rate")
BLOCK_SIZES = (16, 64, 256, 1024, 4096)


async def expected_blocks(
    db: ServiceDatabase, experiment_id: str
) -> dict[tuple[str, int, int], tuple[Any, ...]]:
    """The summary computed here from the stored runs, independently of the SQL that keeps it."""
    runs = await fetch(
        db,
        "SELECT epoch, train_loss, val_loss, train_accuracy, val_accuracy, learning_rate,"
        " metrics::text AS metrics, created_at FROM experiments.training_runs"
        " WHERE experiment_id = $1",
        uuid.UUID(experiment_id),
    )
    blocks: dict[tuple[str, int, int], list[Any]] = {}
    # levels 1-3 leave out the runs of the tail block (the highest epoch's level-0 block)
    tail = max((run["epoch"] for run in runs), default=0) >> 4
    for run in runs:
        values: dict[str, float | None] = {"": None}
        values.update({c: run[c] for c in RUN_COLUMNS if run[c] is not None})
        for key, value in json.loads(run["metrics"]).items():
            numeric = isinstance(value, int | float) and not isinstance(value, bool)
            if key not in RUN_COLUMNS and numeric:
                values[key] = float(value)
        for level, size in enumerate(BLOCK_SIZES):
            if level in (1, 2, 3) and run["epoch"] >> 4 == tail:
                continue
            for metric, value in values.items():
                key = (metric, level, run["epoch"] // size)
                entry = blocks.setdefault(key, [0, None, None, -1, None, None])
                entry[0] += 1
                if value is not None:
                    entry[1] = value if entry[1] is None else min(entry[1], value)
                    entry[2] = value if entry[2] is None else max(entry[2], value)
                if run["epoch"] > entry[3]:
                    entry[3], entry[4], entry[5] = run["epoch"], value, run["created_at"]
    return {key: tuple(entry) for key, entry in blocks.items()}


async def stored_blocks(
    db: ServiceDatabase, experiment_id: str
) -> dict[tuple[str, int, int], tuple[Any, ...]]:
    rows = await fetch(
        db,
        "SELECT metric, level, block, n, min, max, last_epoch, last_value, last_at"
        " FROM experiments.history_blocks WHERE experiment_id = $1",
        uuid.UUID(experiment_id),
    )
    return {
        (r["metric"], r["level"], r["block"]): (
            r["n"],
            r["min"],
            r["max"],
            r["last_epoch"],
            r["last_value"],
            r["last_at"],
        )
        for r in rows
    }
