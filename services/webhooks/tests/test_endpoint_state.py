"""Endpoint state: disabling (at once or after a run of failures), enabling, rate limits, and
the owner's notification preference mutes."""

from __future__ import annotations

import json
import uuid

from runyard.shared.testing import identity_headers
from runyard.shared.testing.events import experiment_completed
from runyard.webhooks.workers import deliver_due
from services.webhooks.tests.webhooks_helpers import (
    Reply,
    consume,
    create_webhook,
    deliveries,
    endpoint,
    logs,
    make_due,
    outbox,
    preference_updated,
    query,
)


async def test_a_410_disables_the_endpoint_at_once_and_tells_the_owner_through_the_outbox(
    client, db, sessionmaker, http, settings, receiver
) -> None:
    owner = uuid.uuid4()
    webhook = await create_webhook(client, owner, receiver.url("/gone"))
    receiver.script("/gone", Reply(410))
    await consume(sessionmaker, experiment_completed(owner))

    await deliver_due(sessionmaker, http, settings=settings)

    config = await endpoint(db, webhook["id"])
    assert config["is_active"] is False
    assert (config["disabled_reason"], config["consecutive_failures"]) == ("endpoint_gone", 1)
    [row] = await outbox(db)
    assert (row["topic"], row["key"]) == ("webhook.endpoint_disabled", webhook["id"])
    assert row["payload"]["data"] == {
        "webhook_id": webhook["id"],
        "owner_id": str(owner),
        "name": "hook",
        "url": receiver.url("/gone"),
        "reason": "endpoint_gone",
        "consecutive_failures": 1,
    }
    # the delivery is kept for when the endpoint comes back, but nothing goes out meanwhile
    await consume(sessionmaker, experiment_completed(owner))
    assert [d["status"] for d in await deliveries(db)] == ["pending"]
    await make_due(db)
    assert await deliver_due(sessionmaker, http, settings=settings) == 0

    enabled = await client.post(
        f"/api/v1/webhooks/{webhook['id']}/enable", headers=identity_headers(owner)
    )
    assert enabled.status_code == 200, enabled.text
    assert enabled.json()["is_active"] is True
    assert enabled.json()["consecutive_failures"] == 0
    assert enabled.json()["disabled_reason"] is None
    assert await deliver_due(sessionmaker, http, settings=settings) == 1
    assert [d["status"] for d in await deliveries(db)] == ["succeeded"]


async def test_slack_404_and_403_disable_a_slack_endpoint_but_not_a_generic_one(
    client, db, sessionmaker, http, settings, receiver
) -> None:
    owner = uuid.uuid4()
    slack = await create_webhook(client, owner, receiver.url("/slack"), provider_type="slack")
    generic = await create_webhook(client, owner, receiver.url("/generic"))
    receiver.script("/slack", Reply(404, body="no_service"))
    receiver.script("/generic", Reply(404))
    await consume(sessionmaker, experiment_completed(owner))

    await deliver_due(sessionmaker, http, settings=settings)

    assert (await endpoint(db, slack["id"]))["disabled_reason"] == "endpoint_rejected"
    assert (await endpoint(db, generic["id"]))["is_active"] is True
    [row] = await outbox(db)
    assert row["payload"]["data"]["webhook_id"] == slack["id"]


async def test_a_run_of_failures_disables_only_once_it_is_long_enough_in_count_and_time(
    client, db, sessionmaker, http, settings, receiver
) -> None:
    strict = settings.model_copy(
        update={"disable_after_failures": 3, "disable_after_failing_hours": 24}
    )
    owner = uuid.uuid4()
    webhook = await create_webhook(client, owner, receiver.url("/down"))
    receiver.statuses["/down"] = 503
    for _ in range(3):
        await consume(sessionmaker, experiment_completed(owner))
    await deliver_due(sessionmaker, http, settings=strict)

    config = await endpoint(db, webhook["id"])
    assert (config["consecutive_failures"], config["is_active"]) == (3, True)  # 3, but not 24 h

    await query(
        db, "UPDATE webhooks.webhook_configurations SET failing_since = now() - interval '25 h'"
    )
    await make_due(db)
    await deliver_due(sessionmaker, http, settings=strict)

    config = await endpoint(db, webhook["id"])
    assert config["is_active"] is False
    assert config["disabled_reason"] == "too_many_consecutive_failures"
    [row] = await outbox(db)  # one event, although three attempts crossed the line
    assert row["payload"]["data"]["consecutive_failures"] == 6
    assert row["payload"]["data"]["reason"] == "too_many_consecutive_failures"


async def test_a_success_resets_the_run_of_failures(
    client, db, sessionmaker, http, settings, receiver
) -> None:
    strict = settings.model_copy(
        update={"disable_after_failures": 2, "disable_after_failing_hours": 0}
    )
    owner = uuid.uuid4()
    webhook = await create_webhook(client, owner, receiver.url("/wobbly"))
    receiver.script("/wobbly", Reply(500), Reply(200), Reply(500))
    for _ in range(3):
        await consume(sessionmaker, experiment_completed(owner))
        await deliver_due(sessionmaker, http, settings=strict)

    config = await endpoint(db, webhook["id"])
    assert [log["status"] for log in await logs(db)] == ["failed", "success", "failed"]
    assert (config["consecutive_failures"], config["is_active"]) == (1, True)
    assert await outbox(db) == []


async def test_slack_endpoints_are_rate_limited_to_one_request_a_second_by_scheduling(
    client, db, sessionmaker, http, settings, receiver
) -> None:
    owner = uuid.uuid4()
    webhook = await create_webhook(client, owner, receiver.url("/slack"), provider_type="slack")
    for _ in range(3):
        await consume(sessionmaker, experiment_completed(owner))

    assert await deliver_due(sessionmaker, http, settings=settings) == 1
    assert await deliver_due(sessionmaker, http, settings=settings) == 0  # the slot is taken
    held_for = (await endpoint(db, webhook["id"]))["held_for"]
    assert 0 < held_for <= 1.0
    assert [d["status"] for d in await deliveries(db)].count("pending") == 2

    await query(db, "UPDATE webhooks.webhook_configurations SET next_send_at = now()")
    assert await deliver_due(sessionmaker, http, settings=settings) == 1
    assert len(receiver.requests) == 2


async def test_a_configured_rate_limit_lets_that_many_requests_start_per_second(
    client, db, sessionmaker, http, settings, receiver
) -> None:
    owner = uuid.uuid4()
    limited = await create_webhook(
        client, owner, receiver.url("/limited"), settings={"rate_limit_per_second": 2}
    )
    await create_webhook(client, owner, receiver.url("/unlimited"))
    for _ in range(5):
        await consume(sessionmaker, experiment_completed(owner))

    assert await deliver_due(sessionmaker, http, settings=settings) == 2 + 5
    assert len(receiver.received("/limited")) == 2
    assert 0 < (await endpoint(db, limited["id"]))["held_for"] <= 1.0


async def test_the_owners_mutes_keep_generic_and_slack_deliveries_apart(
    client, db, sessionmaker, receiver
) -> None:
    owner = uuid.uuid4()
    generic = await create_webhook(client, owner, receiver.url("/generic"))
    slack = await create_webhook(client, owner, receiver.url("/slack"), provider_type="slack")

    await consume(sessionmaker, preference_updated(owner, "experiment.completed", webhook=False))
    await consume(sessionmaker, experiment_completed(owner))
    assert [str(d["webhook_id"]) for d in await deliveries(db)] == [slack["id"]]

    await query(db, "DELETE FROM webhooks.webhook_deliveries")
    await consume(sessionmaker, preference_updated(owner, "experiment.completed", slack=False))
    await consume(sessionmaker, experiment_completed(owner))
    assert [str(d["webhook_id"]) for d in await deliveries(db)] == [generic["id"]]

    # a mute for another event type, or another user's mute, changes nothing
    await query(db, "DELETE FROM webhooks.webhook_deliveries")
    await consume(sessionmaker, preference_updated(owner, "experiment.completed"))
    await consume(sessionmaker, preference_updated(owner, "experiment.failed", webhook=False))
    await consume(
        sessionmaker, preference_updated(uuid.uuid4(), "experiment.completed", webhook=False)
    )
    await consume(sessionmaker, experiment_completed(owner))
    assert len(await deliveries(db)) == 2


async def test_an_older_preference_event_does_not_overwrite_a_newer_one(
    client, db, sessionmaker, receiver
) -> None:
    owner = uuid.uuid4()
    await create_webhook(client, owner, receiver.url("/generic"))
    older = preference_updated(owner, "experiment.completed", webhook=True)
    newer = preference_updated(owner, "experiment.completed", webhook=False)
    await consume(sessionmaker, newer)
    await consume(sessionmaker, older)

    [row] = await query(db, "SELECT * FROM webhooks.notification_preferences")
    assert row["webhook_enabled"] is False
    await consume(sessionmaker, experiment_completed(owner))
    assert await deliveries(db) == []


async def test_an_endpoint_subscribed_to_preference_events_still_gets_them(
    client, db, sessionmaker, http, settings, receiver
) -> None:
    owner = uuid.uuid4()
    await create_webhook(
        client, owner, receiver.url("/prefs"), enabled_events=["notification_preference.*"]
    )
    await consume(sessionmaker, preference_updated(owner, "experiment.completed", webhook=False))
    await deliver_due(sessionmaker, http, settings=settings)
    [request] = receiver.requests
    assert json.loads(request.body)["type"] == "notification_preference.updated"
