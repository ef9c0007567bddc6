"""What an owner does with an endpoint: test it, rotate its secret, look at deliveries, retry
one, replay failures, change it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks import Webhook

from runyard.shared.testing import identity_headers
from runyard.shared.testing.events import experiment_completed
from runyard.webhooks.workers import deliver_due
from services.webhooks.tests.webhooks_helpers import (
    SIGNING_SECRETS,
    Reply,
    consume,
    create_webhook,
    deliveries,
    endpoint,
    logs,
    query,
)


async def test_the_test_endpoint_sends_a_signed_webhook_test_now_and_returns_the_answer(
    client, db, receiver
) -> None:
    owner = uuid.uuid4()
    webhook = await create_webhook(client, owner, receiver.url("/hook"))
    receiver.script("/hook", Reply(202, body="thanks"))

    answer = await client.post(
        f"/api/v1/webhooks/{webhook['id']}/test", headers=identity_headers(owner)
    )

    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert (result["success"], result["status_code"], result["response_body"]) == (
        True,
        202,
        "thanks",
    )
    [request] = receiver.requests
    document = Webhook(webhook["secret"]).verify(request.body, request.headers)
    assert document["type"] == "webhook.test"
    assert document["data"]["webhook_id"] == webhook["id"]
    assert request.headers["webhook-id"] == result["event_id"] == document["id"]
    [log] = await logs(db)
    assert (log["trigger_type"], log["delivery_id"], str(log["id"])) == (
        "test",
        None,
        result["attempt_id"],
    )
    assert await deliveries(db) == []


async def test_a_failing_test_reports_the_failure_and_leaves_the_endpoint_alone(
    client, db, receiver
) -> None:
    owner = uuid.uuid4()
    webhook = await create_webhook(client, owner, receiver.url("/gone"))
    receiver.statuses["/gone"] = 410

    answer = await client.post(
        f"/api/v1/webhooks/{webhook['id']}/test", headers=identity_headers(owner)
    )

    assert answer.status_code == 200
    assert (answer.json()["success"], answer.json()["status_code"]) == (False, 410)
    assert answer.json()["error"] == "HTTP 410"
    config = await endpoint(db, webhook["id"])
    assert (config["is_active"], config["consecutive_failures"]) == (True, 0)


async def test_after_a_rotation_both_secrets_sign_until_the_overlap_ends(
    client, db, sessionmaker, http, settings, receiver
) -> None:
    owner = uuid.uuid4()
    webhook = await create_webhook(client, owner, receiver.url("/hook"))
    old_secret = webhook["secret"]

    rotated = await client.post(
        f"/api/v1/webhooks/{webhook['id']}/rotate-secret", headers=identity_headers(owner)
    )
    assert rotated.status_code == 200, rotated.text
    new_secret = rotated.json()["secret"]
    SIGNING_SECRETS[receiver.url("/hook")].append(new_secret)
    assert new_secret.startswith("whsec_") and new_secret != old_secret
    overlap_ends = datetime.fromisoformat(rotated.json()["previous_secret_expires_at"])
    assert timedelta(hours=23) < overlap_ends - datetime.now(UTC) <= timedelta(hours=24)

    await consume(sessionmaker, experiment_completed(owner))
    await deliver_due(sessionmaker, http, settings=settings)
    [during] = receiver.requests
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    for secret in (old_secret, new_secret):
        Webhook(secret).verify(during.body, during.headers)

    await query(
        db,
        "UPDATE webhooks.webhook_configurations "
        "SET previous_secret_expires_at = now() - interval '1 s'",
    )
    await consume(sessionmaker, experiment_completed(owner))
    await deliver_due(sessionmaker, http, settings=settings)
    after = receiver.requests[1]
    assert len(after.headers["webhook-signature"].split(" ")) == 1
    Webhook(new_secret).verify(after.body, after.headers)
    with pytest.raises(Exception, match="signature"):
        Webhook(old_secret).verify(after.body, after.headers)


async def test_deliveries_are_listed_with_filters_and_shown_with_their_attempts(
    client, db, sessionmaker, http, settings, receiver
) -> None:
    owner = uuid.uuid4()
    me = identity_headers(owner)
    webhook = await create_webhook(client, owner, receiver.url("/hook"), enabled_events=["*"])
    receiver.script("/hook", Reply(500))
    failing = experiment_completed(owner)
    await consume(sessionmaker, failing)
    await deliver_due(sessionmaker, http, settings=settings)
    before_second = datetime.now(UTC)
    await consume(sessionmaker, experiment_completed(owner))
    await deliver_due(sessionmaker, http, settings=settings)
    base = f"/api/v1/webhooks/{webhook['id']}/deliveries"

    async def listed(query_string: str = "") -> list[str]:
        answer = await client.get(f"{base}{query_string}", headers=me)
        assert answer.status_code == 200, answer.text
        return [d["event_id"] for d in answer.json()["items"]]

    assert len(await listed()) == 2
    assert await listed("?status=pending") == [failing.id]
    assert len(await listed("?status=succeeded")) == 1
    assert len(await listed("?event_type=experiment.*")) == 2
    assert await listed("?event_type=experiment.failed") == []
    since = before_second.isoformat().replace("+00:00", "Z")
    assert await listed(f"?since={since}") != [failing.id]
    assert len(await listed(f"?since={since}")) == 1
    page = (await client.get(f"{base}?limit=1", headers=me)).json()
    assert page["next_cursor"]
    assert (await client.get(f"{base}?status=lost", headers=me)).status_code == 422

    [pending] = [d for d in await deliveries(db) if d["status"] == "pending"]
    detail = await client.get(f"{base}/{pending['id']}", headers=me)
    assert detail.status_code == 200
    assert detail.json()["payload"]["id"] == failing.id
    [attempt] = detail.json()["attempts"]
    assert (attempt["status"], attempt["response_status_code"]) == ("failed", 500)
    assert attempt["next_attempt_at"] is not None

    attempts = await client.get(
        f"/api/v1/webhooks/{webhook['id']}/attempts?status=failed", headers=me
    )
    assert [a["event_id"] for a in attempts.json()["items"]] == [failing.id]


async def test_a_manual_retry_sends_a_failed_delivery_once_more(
    client, db, sessionmaker, http, settings, receiver
) -> None:
    owner = uuid.uuid4()
    webhook = await create_webhook(client, owner, receiver.url("/hook"))
    receiver.statuses["/hook"] = 503
    event = experiment_completed(owner)
    await consume(sessionmaker, event)
    await query(db, "UPDATE webhooks.webhook_deliveries SET attempt_count = 7")
    await deliver_due(sessionmaker, http, settings=settings)
    [delivery] = await deliveries(db)
    assert delivery["status"] == "failed"

    retried = await client.post(
        f"/api/v1/webhooks/{webhook['id']}/deliveries/{delivery['id']}/retry",
        headers=identity_headers(owner),
    )
    assert retried.status_code == 202, retried.text
    assert retried.json()["status"] == "pending"
    await deliver_due(sessionmaker, http, settings=settings)  # fails again: no more retries
    [delivery] = await deliveries(db)
    assert (delivery["status"], delivery["next_attempt_at"]) == ("failed", None)

    receiver.statuses["/hook"] = 200
    await client.post(
        f"/api/v1/webhooks/{webhook['id']}/deliveries/{delivery['id']}/retry",
        headers=identity_headers(owner),
    )
    await deliver_due(sessionmaker, http, settings=settings)
    [delivery] = await deliveries(db)
    assert delivery["status"] == "succeeded"
    assert [r.headers["webhook-id"] for r in receiver.requests] == [event.id] * 3
    assert [log["trigger_type"] for log in await logs(db)] == [
        "event",
        "manual_retry",
        "manual_retry",
    ]


async def test_replay_requeues_every_failed_delivery_since_a_time(
    client, db, sessionmaker, http, settings, receiver
) -> None:
    owner = uuid.uuid4()
    webhook = await create_webhook(client, owner, receiver.url("/hook"))
    for _ in range(3):
        await consume(sessionmaker, experiment_completed(owner))
    await query(
        db,
        "UPDATE webhooks.webhook_deliveries SET status = 'failed', next_attempt_at = NULL, "
        "attempt_count = 8",
    )
    await query(
        db,
        "UPDATE webhooks.webhook_deliveries SET created_at = now() - interval '3 days' "
        "WHERE id = (SELECT id FROM webhooks.webhook_deliveries LIMIT 1)",
    )

    since = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    replayed = await client.post(
        f"/api/v1/webhooks/{webhook['id']}/replay",
        json={"since": since},
        headers=identity_headers(owner),
    )
    assert replayed.status_code == 202, replayed.text
    assert replayed.json() == {"queued": 2}
    await deliver_due(sessionmaker, http, settings=settings)
    assert sorted(d["status"] for d in await deliveries(db)) == ["failed", "succeeded", "succeeded"]
    assert {log["trigger_type"] for log in await logs(db)} == {"replay"}

    naive = await client.post(
        f"/api/v1/webhooks/{webhook['id']}/replay",
        json={"since": "2026-01-01T00:00:00"},
        headers=identity_headers(owner),
    )
    assert naive.status_code == 422


async def test_retry_and_replay_on_a_disabled_endpoint_ask_to_enable_it_first(
    client, db, receiver
) -> None:
    owner = uuid.uuid4()
    webhook = await create_webhook(client, owner, receiver.url("/hook"))
    await client.patch(
        f"/api/v1/webhooks/{webhook['id']}",
        json={"is_active": False},
        headers=identity_headers(owner),
    )
    answer = await client.post(
        f"/api/v1/webhooks/{webhook['id']}/replay",
        json={"since": "2026-01-01T00:00:00Z"},
        headers=identity_headers(owner),
    )
    assert answer.status_code == 409
    assert answer.json()["disabled_reason"] == "manual"


async def test_patch_changes_only_the_fields_sent_and_checks_them(client, db, receiver) -> None:
    owner = uuid.uuid4()
    me = identity_headers(owner)
    webhook = await create_webhook(client, owner, receiver.url("/hook"), description="ci")
    path = f"/api/v1/webhooks/{webhook['id']}"

    changed = await client.patch(
        path,
        json={
            "name": "renamed",
            "enabled_events": ["experiment.completed", "login.*"],
            "settings": {"rate_limit_per_second": 5},
        },
        headers=me,
    )
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert (body["name"], body["description"], body["url"]) == (
        "renamed",
        "ci",
        receiver.url("/hook"),
    )
    assert body["enabled_events"] == ["experiment.completed", "login.*"]
    assert body["settings"] == {"headers": {}, "rate_limit_per_second": 5.0}

    paused = await client.patch(path, json={"is_active": False}, headers=me)
    assert (paused.json()["is_active"], paused.json()["disabled_reason"]) == (False, "manual")
    resumed = await client.patch(path, json={"is_active": True}, headers=me)
    assert (resumed.json()["is_active"], resumed.json()["disabled_reason"]) == (True, None)

    for bad in (
        {"url": "ftp://example.com/x"},
        {"enabled_events": ["nothing.matches"]},
        {"name": None},
        {"settings": {"headers": {"Host": "evil"}}},
        {"owner_id": str(uuid.uuid4())},
    ):
        answer = await client.patch(path, json=bad, headers=me)
        assert answer.status_code == 422, bad
    other = await create_webhook(client, owner, receiver.url("/other"))
    clash = await client.patch(
        f"/api/v1/webhooks/{other['id']}", json={"url": receiver.url("/hook")}, headers=me
    )
    assert clash.status_code == 409
    assert (await endpoint(db, webhook["id"]))["name"] == "renamed"
