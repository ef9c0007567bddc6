"""The paths that keep deliveries cheap: a consumer batch's deliveries inserted in one statement
at its commit, new deliveries handed straight to this process's worker (leased, no claim), the
claim for the rest, and batched recording. None may lose a delivery or send one twice."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from runyard.shared.db import asyncpg_dsn
from runyard.shared.testing.events import experiment_completed
from runyard.webhooks import ssrf
from runyard.webhooks.consumers import handlers
from runyard.webhooks.handoff import Handoff
from runyard.webhooks.ssrf import TargetPolicy, TargetRefused
from runyard.webhooks.workers import DELIVERIES_CHANNEL, DeliveryLoop, deliver_due
from services.webhooks.tests.webhooks_helpers import (
    create_webhook,
    deliveries,
    eventually,
    logs,
    make_due,
    query,
)


def new_handoff(settings: Any, **overrides: Any) -> Handoff:
    handoff = Handoff.from_settings(settings)
    for name, value in overrides.items():
        setattr(handoff, name, value)
    return handoff


async def consume_batch(sessionmaker: Any, events: list[Any], handoff: Handoff | None) -> None:
    """The events in one transaction, as the consumer handles a partition's batch."""
    found = handlers(handoff)
    async with sessionmaker() as session, session.begin():
        for event in events:
            await found[event.type](session, event, event.payload())


@contextlib.asynccontextmanager
async def running_loop(
    sessionmaker: Any, http: Any, settings: Any, handoff: Handoff | None
) -> AsyncIterator[DeliveryLoop]:
    loop = DeliveryLoop(sessionmaker, http, settings, handoff)
    task = asyncio.create_task(loop.run(None))
    await asyncio.sleep(0)  # the loop marks the handoff active
    try:
        yield loop
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_batch_s_deliveries_are_inserted_once_per_endpoint_and_event_and_only_if_it_commits(
    client, db, sessionmaker, receiver
) -> None:
    owner = uuid.uuid4()
    await create_webhook(client, owner, receiver.url("/a"))
    await create_webhook(client, owner, receiver.url("/b"))
    events = [experiment_completed(owner) for _ in range(3)]

    with pytest.raises(RuntimeError):
        async with sessionmaker() as session, session.begin():
            found = handlers()
            for event in events:
                await found[event.type](session, event, event.payload())
            raise RuntimeError("the batch fails after its handlers ran")
    assert await deliveries(db) == []

    await consume_batch(sessionmaker, events, None)
    rows = await deliveries(db)
    assert Counter(r["event_id"] for r in rows) == {e.id: 2 for e in events}
    assert all(r["due_in"] <= 0 for r in rows)  # no worker here: due at once, claimed

    await consume_batch(sessionmaker, events, None)  # the same events again: nothing new
    assert len(await deliveries(db)) == 6


async def test_new_deliveries_go_straight_to_the_worker_leased_and_are_sent_once(
    client, db, sessionmaker, http, settings, receiver
) -> None:
    owner = uuid.uuid4()
    await create_webhook(client, owner, receiver.url("/hook"))
    handoff = new_handoff(settings)
    events = [experiment_completed(owner) for _ in range(5)]

    async with running_loop(sessionmaker, http, settings, handoff):
        await consume_batch(sessionmaker, events, handoff)
        # leased for this worker: a claim finds nothing to take
        lease = settings.delivery_timeout_s + settings.delivery_lease_margin_s
        assert all(
            0 < r["due_in"] <= lease for r in await deliveries(db) if r["status"] == "pending"
        )
        await receiver.wait_for(5)

        async def settled() -> bool:
            return {r["status"] for r in await deliveries(db)} == {"succeeded"}

        await eventually(settled)

    assert Counter(r.headers["webhook-id"] for r in receiver.requests) == {e.id: 1 for e in events}
    assert sorted(log["event_id"] for log in await logs(db)) == sorted(e.id for e in events)
    assert handoff.reserved == 0 and not handoff.queue


async def test_what_the_handoff_has_no_room_for_is_inserted_due_and_claimed(
    client, db, sessionmaker, http, settings, receiver
) -> None:
    owner = uuid.uuid4()
    await create_webhook(client, owner, receiver.url("/hook"))
    handoff = new_handoff(settings, capacity=2, active=True)
    events = [experiment_completed(owner) for _ in range(5)]

    await consume_batch(sessionmaker, events, handoff)

    assert len(handoff.queue) == 2 and handoff.reserved == 0
    rows = await deliveries(db)
    assert sorted(r["due_in"] > 0 for r in rows) == [False, False, False, True, True]
    assert await deliver_due(sessionmaker, http, settings=settings) == 3  # the unleased ones


async def test_a_rolled_back_batch_hands_nothing_over_and_gives_its_room_back(
    client, sessionmaker, settings, receiver
) -> None:
    owner = uuid.uuid4()
    await create_webhook(client, owner, receiver.url("/hook"))
    handoff = new_handoff(settings, active=True)

    with pytest.raises(RuntimeError):
        async with sessionmaker() as session, session.begin():
            event = experiment_completed(owner)
            await handlers(handoff)[event.type](session, event, event.payload())
            await session.flush()
            await session.run_sync(lambda s: s.dispatch.before_commit(s))  # inserted ...
            assert handoff.reserved == 1
            raise RuntimeError("... and the commit never happens")

    assert handoff.reserved == 0 and not handoff.queue


async def test_a_handed_delivery_that_waited_too_long_is_left_to_its_lease_and_sent_once(
    client, db, sessionmaker, http, settings, receiver
) -> None:
    owner = uuid.uuid4()
    await create_webhook(client, owner, receiver.url("/hook"))
    handoff = new_handoff(settings, active=True, max_wait_s=0.0)
    event = experiment_completed(owner)
    await consume_batch(sessionmaker, [event], handoff)
    await asyncio.sleep(0.01)

    assert handoff.take() is None  # too late to finish inside its lease: not sent from here
    assert await deliver_due(sessionmaker, http, settings=settings) == 0  # still leased
    await make_due(db)  # the lease ran out
    assert await deliver_due(sessionmaker, http, settings=settings) == 1
    assert [r.headers["webhook-id"] for r in receiver.requests] == [event.id]


async def test_rate_limited_and_held_endpoints_are_never_handed_over(
    client, db, sessionmaker, settings, receiver
) -> None:
    owner = uuid.uuid4()
    await create_webhook(
        client, owner, receiver.url("/limited"), settings={"rate_limit_per_second": 5}
    )
    held = await create_webhook(client, owner, receiver.url("/held"))
    await query(
        db,
        "UPDATE webhooks.webhook_configurations SET next_send_at = now() + interval '1 minute'"
        " WHERE id = $1",
        uuid.UUID(held["id"]),
    )
    handoff = new_handoff(settings, active=True)

    await consume_batch(sessionmaker, [experiment_completed(owner)], handoff)

    assert not handoff.queue
    assert [r["due_in"] <= 0 for r in await deliveries(db)] == [True, True]


async def test_two_workers_claiming_at_once_never_send_a_delivery_twice(
    client, db, sessionmaker, http, settings, receiver
) -> None:
    owner = uuid.uuid4()
    await create_webhook(client, owner, receiver.url("/hook"))
    events = [experiment_completed(owner) for _ in range(40)]
    await consume_batch(sessionmaker, events, None)
    small = settings.model_copy(update={"delivery_batch_size": 4, "delivery_concurrency": 4})

    async def drain() -> int:
        sent = 0
        while n := await deliver_due(sessionmaker, http, settings=small):
            sent += n
        return sent

    assert sum(await asyncio.gather(drain(), drain())) == 40

    assert Counter(r.headers["webhook-id"] for r in receiver.requests) == {e.id: 1 for e in events}
    assert Counter(log["event_id"] for log in await logs(db)) == {e.id: 1 for e in events}
    assert {r["status"] for r in await deliveries(db)} == {"succeeded"}


async def test_workers_are_notified_of_due_deliveries_only(
    client, db, sessionmaker, settings, receiver
) -> None:
    owner = uuid.uuid4()
    await create_webhook(client, owner, receiver.url("/hook"))
    notified: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(asyncpg_dsn(db.admin_url))
    await listener.add_listener(DELIVERIES_CHANNEL, lambda *args: notified.put_nowait(args[3]))
    try:
        await consume_batch(
            sessionmaker, [experiment_completed(owner)], new_handoff(settings, active=True)
        )
        with pytest.raises(TimeoutError):  # leased for this process's worker: no one to wake
            await asyncio.wait_for(notified.get(), 0.5)

        await consume_batch(sessionmaker, [experiment_completed(owner)], None)
        await asyncio.wait_for(notified.get(), 5)  # due now: the workers claim it
    finally:
        await listener.close()


def test_a_url_verdict_is_remembered_per_policy() -> None:
    strict, local = TargetPolicy(), TargetPolicy(allow_private=True)
    path = uuid.uuid4().hex  # URLs no other test checked
    hits = ssrf._url_verdict.cache_info().hits
    for _ in range(2):  # the second time from the cache: the same verdicts
        with pytest.raises(TargetRefused, match="loopback"):
            strict.check_url(f"https://127.0.0.1/{path}")
        assert local.check_url(f"http://127.0.0.1:8080/{path}") == ("127.0.0.1", 8080)
        with pytest.raises(TargetRefused, match="https"):
            strict.check_url(f"http://example.com/{path}")
    assert ssrf._url_verdict.cache_info().hits - hits == 3
