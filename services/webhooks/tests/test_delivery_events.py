"""``webhook.deliveries_updated``: the recorder adds each batch's outcomes to the endpoint's
pending row in the batch's transaction; the ``delivery-events`` worker writes one event per
endpoint and window and deletes the row in one transaction (never twice, never lost). Real
receivers on 127.0.0.1, real PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from runyard.shared.runtime import WorkSignal
from runyard.shared.testing import identity_headers
from runyard.shared.testing.events import experiment_completed
from runyard.webhooks import delivery_events
from runyard.webhooks.workers import deliver_due
from services.webhooks.tests.webhooks_helpers import (
    consume,
    create_webhook,
    deliveries,
    eventually,
    make_due,
    outbox,
    query,
)


async def write_due(sessionmaker: Any, window_s: float = 0) -> int:
    async with sessionmaker() as session, session.begin():
        return await delivery_events.write_due(session, window_s=window_s)


async def events(db: Any) -> list[dict[str, Any]]:
    return [
        row["payload"]
        for row in await outbox(db)
        if row["payload"]["type"] == "webhook.deliveries_updated"
    ]


async def pending(db: Any) -> list[Any]:
    return await query(db, "SELECT * FROM webhooks.pending_delivery_events ORDER BY first_at")


async def test_a_windows_attempts_become_one_event_per_endpoint_written_once(
    client, db, sessionmaker, http, settings, receiver
) -> None:
    owner, other = uuid.uuid4(), uuid.uuid4()
    good = await create_webhook(client, owner, receiver.url("/good"))
    bad = await create_webhook(client, other, receiver.url("/bad"))
    receiver.statuses["/bad"] = 500
    for _ in range(3):
        await consume(sessionmaker, experiment_completed(owner))
    await consume(sessionmaker, experiment_completed(other))
    assert await deliver_due(sessionmaker, http, settings=settings) == 4

    # recorded with the attempts: one pending row per endpoint, no event yet
    rows = {str(r["webhook_id"]): r for r in await pending(db)}
    assert (rows[good["id"]]["attempts"], rows[good["id"]]["succeeded"]) == (3, 3)
    assert (rows[bad["id"]]["attempts"], rows[bad["id"]]["retrying"]) == (1, 1)
    assert await write_due(sessionmaker, window_s=3600) == 0  # the window is still open
    assert await events(db) == []

    # the retry falls in the same window: it adds up
    await make_due(db)
    assert await deliver_due(sessionmaker, http, settings=settings) == 1
    assert await write_due(sessionmaker) == 2
    assert await pending(db) == []
    assert await write_due(sessionmaker) == 0  # written once

    by_endpoint = {e["data"]["webhook_id"]: e for e in await events(db)}
    assert by_endpoint.keys() == {good["id"], bad["id"]}
    ok, failing = by_endpoint[good["id"]], by_endpoint[bad["id"]]
    assert ok["subject"] == good["id"] and ok["source"] == "/runyard/webhooks"
    assert ok["data"]["owner_id"] == str(owner) and failing["data"]["owner_id"] == str(other)
    counts = ("attempts", "succeeded", "failed", "retrying")
    assert [ok["data"][k] for k in counts] == [3, 3, 0, 0]
    assert [failing["data"][k] for k in counts] == [2, 0, 0, 2]
    delivered = {str(d["id"]): d for d in await deliveries(db)}
    assert {o["delivery_id"] for o in ok["data"]["latest"]} == {
        i for i, d in delivered.items() if d["webhook_id"] == uuid.UUID(good["id"])
    }
    assert {(o["status"], o["status_code"], o["event_type"]) for o in ok["data"]["latest"]} == {
        ("succeeded", 200, "experiment.completed")
    }
    assert [(o["attempt_number"], o["status"]) for o in failing["data"]["latest"]] == [
        (1, "pending"),
        (2, "pending"),
    ]


async def test_an_event_names_the_last_twenty_deliveries_of_its_window(
    client, db, sessionmaker, http, settings, receiver
) -> None:
    owner = uuid.uuid4()
    await create_webhook(client, owner, receiver.url("/busy"))
    batches = []
    for size in (15, 10):  # two recorder batches: the row keeps the newest across them
        for _ in range(size):
            await consume(sessionmaker, experiment_completed(owner))
        before = {d["id"] for d in await deliveries(db)}
        assert await deliver_due(sessionmaker, http, settings=settings) == size
        batches.append(before)
    assert await write_due(sessionmaker) == 1
    [event] = await events(db)
    assert (event["data"]["attempts"], event["data"]["succeeded"]) == (25, 25)
    latest = [uuid.UUID(o["delivery_id"]) for o in event["data"]["latest"]]
    assert len(latest) == len(set(latest)) == delivery_events.LATEST
    second_batch = batches[1] - batches[0]
    assert set(latest[-10:]) == second_batch  # the newest last
    assert set(latest[:10]) <= batches[0]


async def test_a_deleted_endpoint_takes_its_pending_event_with_it(
    client, db, sessionmaker, http, settings, receiver
) -> None:
    owner = uuid.uuid4()
    webhook = await create_webhook(client, owner, receiver.url("/gone"))
    await consume(sessionmaker, experiment_completed(owner))
    await deliver_due(sessionmaker, http, settings=settings)
    assert len(await pending(db)) == 1
    response = await client.delete(
        f"/api/v1/webhooks/{webhook['id']}", headers=identity_headers(owner)
    )
    assert response.status_code == 204
    assert await pending(db) == []
    assert await write_due(sessionmaker) == 0


async def test_the_worker_writes_the_event_after_a_results_commit_wakes_it(
    client, db, sessionmaker, http, settings, receiver
) -> None:
    owner = uuid.uuid4()
    await create_webhook(client, owner, receiver.url("/live"))
    recorded = WorkSignal()
    # an idle poll far beyond the test: only the wake-up can make it write
    worker = asyncio.create_task(
        delivery_events.write_events(sessionmaker, recorded, window_s=0.05, poll_s=3600)
    )
    try:
        await asyncio.sleep(0.1)  # its first pass found nothing
        await consume(sessionmaker, experiment_completed(owner))
        await deliver_due(sessionmaker, http, settings=settings)
        recorded.notify()  # what the delivery loop's recorder does after each commit
        [event] = await eventually(lambda: events(db))
        assert event["data"]["succeeded"] == 1
        assert await pending(db) == []
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)


async def test_an_endpoint_cannot_subscribe_to_the_live_progress_events(client) -> None:
    owner = uuid.uuid4()
    for private in ("webhook.deliveries_updated", "dataset_generation.progressed"):
        answer = await client.post(
            "/api/v1/webhooks",
            json={"name": "hook", "url": "http://127.0.0.1:9/x", "enabled_events": [private]},
            headers=identity_headers(owner),
        )
        assert answer.status_code == 422, answer.text
        assert answer.headers["content-type"].startswith("application/problem+json")
    # a pattern still matches the public types of the family
    answer = await client.post(
        "/api/v1/webhooks",
        json={"name": "jobs", "url": "http://127.0.0.1:9/y", "enabled_events": ["nas_trial.*"]},
        headers=identity_headers(owner),
    )
    assert answer.status_code == 201, answer.text
