"""The read model of users (fed by user.* events): stale events are dropped by sequence."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from runyard.experiments.consumers import handlers
from runyard.shared.db import create_engine, create_sessionmaker
from runyard.shared.events import CloudEvent
from runyard.shared.testing.events import user_deactivated, user_registered, user_updated
from services.experiments.tests.experiments_helpers import act, new_experiment, outbox


@pytest.fixture
async def sessionmaker(settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(settings.database_url, pool_size=1)
    yield create_sessionmaker(engine, schema="experiments")
    await engine.dispose()


async def deliver(sessionmaker, event: CloudEvent) -> None:
    """What the consumer does with a record: the topic's handler, in one transaction."""
    async with sessionmaker() as session, session.begin():
        await handlers()[event.type](session, event, event.payload())


def snapshot(factory, user_id: uuid.UUID, email: str, sequence: int) -> CloudEvent:
    """auth's ``user.registered`` or ``user.updated`` of a user named ada."""
    return factory(user_id, username="ada", email=email, full_name="Ada L", sequence=sequence)


async def owner_on_next_event(client, db, who) -> dict:
    experiment = await new_experiment(client, who)
    await act(client, who, experiment["id"], "start")
    return (await outbox(db))[-1]["data"]


async def test_events_name_the_owner_from_the_newest_user_event(
    client, db, sessionmaker, alice
) -> None:
    await deliver(sessionmaker, snapshot(user_registered, alice.id, "old@pumplab.example", 1))
    await deliver(sessionmaker, snapshot(user_updated, alice.id, "new@pumplab.example", 3))
    # an older update arriving late changes nothing
    await deliver(sessionmaker, snapshot(user_updated, alice.id, "stale@pumplab.example", 2))

    data = await owner_on_next_event(client, db, alice)
    assert (data["owner_username"], data["owner_email"], data["owner_full_name"]) == (
        "ada",
        "new@pumplab.example",
        "Ada L",
    )


async def test_an_unknown_owner_leaves_the_names_empty(client, db, alice) -> None:
    data = await owner_on_next_event(client, db, alice)
    assert data["owner_id"] == str(alice.id)
    assert data["owner_username"] is None and data["owner_email"] is None


async def test_deactivation_wins_over_an_older_registration(sessionmaker, db) -> None:
    from services.experiments.tests.experiments_helpers import fetch

    user_id = uuid.uuid4()
    await deliver(sessionmaker, user_deactivated(user_id, username="ada", sequence=5))
    await deliver(sessionmaker, snapshot(user_registered, user_id, "ada@pumplab.example", 1))
    rows = await fetch(
        db, "SELECT is_active, sequence FROM experiments.users WHERE user_id = $1", user_id
    )
    assert [(r["is_active"], r["sequence"]) for r in rows] == [(False, 5)]
