from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import asyncpg
import pytest
from standardwebhooks import Webhook

from runyard.shared.contracts.auth import LoginFailed
from runyard.shared.contracts.experiments import ExperimentCompleted
from runyard.shared.db import asyncpg_dsn
from runyard.shared.events import CloudEvent, make_event
from runyard.shared.inbox import EventConsumer
from runyard.shared.testing import ServiceDatabase, identity_headers
from runyard.webhooks import service
from runyard.webhooks.consumers import fan_out, handlers
from runyard.webhooks.workers import deliver_due


def experiment_completed(owner: uuid.UUID) -> CloudEvent:
    experiment_id = uuid.uuid4()
    return make_event(
        ExperimentCompleted(
            experiment_id=experiment_id,
            name="cnn baseline",
            owner_id=owner,
            model_type="cnn1d",
            status="completed",
            final_metrics={"val_accuracy": 0.93},
            best_epoch=7,
            total_epochs=10,
            duration_seconds=42.0,
        ),
        source="/runyard/experiments",
        subject=experiment_id,
        sequence=2,
    )


async def create_webhook(client: Any, owner: uuid.UUID, url: str, **fields: Any) -> dict[str, Any]:
    answer = await client.post(
        "/api/v1/webhooks",
        json={"name": "hook", "url": url, "enabled_events": ["experiment.*"], **fields},
        headers=identity_headers(owner),
    )
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def run_fan_out(sessionmaker: Any, event: CloudEvent) -> None:
    async with sessionmaker() as session, session.begin():
        await fan_out(session, event, event.payload())


async def query(db: ServiceDatabase, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(asyncpg_dsn(db.admin_url))
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def deliveries(db: ServiceDatabase) -> list[asyncpg.Record]:
    return await query(
        db, "SELECT *, next_attempt_at > now() AS in_future FROM webhooks.webhook_deliveries"
    )


async def logs(db: ServiceDatabase) -> list[asyncpg.Record]:
    return await query(db, "SELECT * FROM webhooks.webhook_logs ORDER BY sent_at")


async def test_completed_experiment_is_posted_to_the_owner_signed_per_standard_webhooks(
    client, db, sessionmaker, http, settings, receiver
) -> None:
    owner = uuid.uuid4()
    webhook = await create_webhook(client, owner, receiver.url("/hook"))
    event = experiment_completed(owner)

    await run_fan_out(sessionmaker, event)
    assert await deliver_due(sessionmaker, http, settings=settings) == 1

    [request] = receiver.requests
    assert request.method == "POST" and request.path == "/hook"
    assert request.headers["webhook-id"] == event.id
    assert request.headers["Content-Type"] == "application/json"
    document = Webhook(webhook["secret"]).verify(request.body, request.headers)
    assert document["id"] == event.id
    assert document["type"] == "experiment.completed"
    assert document["specversion"] == "1.0"
    assert document["data"]["final_metrics"] == {"val_accuracy": 0.93}
    with pytest.raises(Exception, match="signature"):
        Webhook(webhook["secret"]).verify(request.body + b" ", request.headers)

    [log] = await logs(db)
    assert (log["status"], log["response_status_code"], log["attempt_number"]) == (
        "success",
        200,
        1,
    )
    assert (log["trigger_type"], log["event_id"]) == ("event", event.id)
    assert log["response_body"] == "answered 200"
    [delivery] = await deliveries(db)
    assert (delivery["status"], delivery["attempt_count"]) == ("succeeded", 1)

    listed = await client.get(
        f"/api/v1/webhooks/{webhook['id']}/deliveries", headers=identity_headers(owner)
    )
    assert listed.status_code == 200
    [attempt] = listed.json()["items"]
    assert (attempt["status"], attempt["event_type"]) == ("success", "experiment.completed")
    assert await deliver_due(sessionmaker, http, settings=settings) == 0
    assert len(receiver.requests) == 1


async def test_the_same_event_fanned_out_twice_is_delivered_once(
    client, db, sessionmaker, http, settings, receiver
) -> None:
    owner = uuid.uuid4()
    await create_webhook(client, owner, receiver.url("/hook"))
    event = experiment_completed(owner)
    await run_fan_out(sessionmaker, event)
    await run_fan_out(sessionmaker, event)
    assert len(await deliveries(db)) == 1
    await deliver_due(sessionmaker, http, settings=settings)
    assert len(receiver.requests) == 1


async def test_only_the_owners_matching_active_endpoints_get_a_delivery(
    client, db, sessionmaker, receiver
) -> None:
    owner = uuid.uuid4()
    matching = await create_webhook(client, owner, receiver.url("/mine"), enabled_events=["*"])
    await create_webhook(
        client, owner, receiver.url("/logins-only"), enabled_events=["login.failed"]
    )
    await create_webhook(client, uuid.uuid4(), receiver.url("/someone-else"))

    await run_fan_out(sessionmaker, experiment_completed(owner))

    assert [str(d["webhook_id"]) for d in await deliveries(db)] == [matching["id"]]


async def test_events_without_an_owner_are_not_delivered(
    client, db, sessionmaker, receiver
) -> None:
    await create_webhook(client, uuid.uuid4(), receiver.url("/hook"), enabled_events=["*"])
    event = make_event(
        LoginFailed(username_attempted="ghost", reason="unknown user"),
        source="/runyard/auth",
        subject="ghost",
    )
    await run_fan_out(sessionmaker, event)
    assert await deliveries(db) == []


async def test_a_500_answer_logs_a_failed_attempt_and_schedules_a_retry(
    client, db, sessionmaker, http, settings, receiver
) -> None:
    owner = uuid.uuid4()
    webhook = await create_webhook(client, owner, receiver.url("/broken"))
    receiver.statuses["/broken"] = 500
    await run_fan_out(sessionmaker, experiment_completed(owner))

    assert await deliver_due(sessionmaker, http, settings=settings) == 1

    [log] = await logs(db)
    assert (log["status"], log["response_status_code"]) == ("failed", 500)
    assert log["error_message"] == "HTTP 500"
    [delivery] = await deliveries(db)
    assert (delivery["status"], delivery["attempt_count"]) == ("pending", 1)
    assert delivery["in_future"] is True
    assert delivery["last_status_code"] == 500
    [config] = await query(db, "SELECT * FROM webhooks.webhook_configurations")
    assert config["consecutive_failures"] == 1
    assert str(config["id"]) == webhook["id"]
    assert await deliver_due(sessionmaker, http, settings=settings) == 0
    assert len(receiver.requests) == 1


async def test_a_redirect_is_a_failed_attempt_and_is_not_followed(
    client, db, sessionmaker, http, settings, receiver
) -> None:
    owner = uuid.uuid4()
    await create_webhook(client, owner, receiver.url("/moved"))
    receiver.statuses["/moved"] = 302
    await run_fan_out(sessionmaker, experiment_completed(owner))

    await deliver_due(sessionmaker, http, settings=settings)

    assert [r.path for r in receiver.requests] == ["/moved"]
    [log] = await logs(db)
    assert (log["status"], log["response_status_code"]) == ("failed", 302)
    assert "redirect" in log["error_message"]
    [delivery] = await deliveries(db)
    assert (delivery["status"], delivery["attempt_count"]) == ("pending", 1)


async def test_an_unreachable_endpoint_is_a_failed_attempt(
    client, db, sessionmaker, http, settings, receiver
) -> None:
    owner = uuid.uuid4()
    await create_webhook(client, owner, "http://127.0.0.1:1/hook")
    await run_fan_out(sessionmaker, experiment_completed(owner))

    await deliver_due(sessionmaker, http, settings=settings)

    [log] = await logs(db)
    assert log["status"] == "failed"
    assert log["response_status_code"] is None
    assert log["error_message"]


async def test_a_delivery_fails_for_good_when_the_retry_schedule_is_exhausted(
    client, db, sessionmaker, http, settings, receiver
) -> None:
    owner = uuid.uuid4()
    await create_webhook(client, owner, receiver.url("/broken"))
    receiver.statuses["/broken"] = 503
    await run_fan_out(sessionmaker, experiment_completed(owner))
    await query(db, "UPDATE webhooks.webhook_deliveries SET attempt_count = 7")

    await deliver_due(sessionmaker, http, settings=settings)

    [delivery] = await deliveries(db)
    assert (delivery["status"], delivery["attempt_count"]) == ("failed", 8)
    assert delivery["next_attempt_at"] is None
    [log] = await logs(db)
    assert log["attempt_number"] == 8


async def test_a_claimed_delivery_is_leased_so_a_crashed_attempt_is_retried_later(
    client, db, sessionmaker, http, settings, receiver
) -> None:
    owner = uuid.uuid4()
    await create_webhook(client, owner, receiver.url("/hook"))
    await run_fan_out(sessionmaker, experiment_completed(owner))
    async with sessionmaker() as session, session.begin():
        [claimed] = await service.claim_due_deliveries(
            session, limit=10, lease=settings_lease(settings)
        )
    # the worker "crashed" here: nothing was recorded

    assert await deliver_due(sessionmaker, http, settings=settings) == 0
    [delivery] = await deliveries(db)
    assert (delivery["status"], delivery["in_future"]) == ("pending", True)
    assert claimed.attempt_number == 1

    await query(db, "UPDATE webhooks.webhook_deliveries SET next_attempt_at = now()")
    assert await deliver_due(sessionmaker, http, settings=settings) == 1
    assert len(receiver.requests) == 1


def settings_lease(settings: Any) -> Any:
    from datetime import timedelta

    return timedelta(seconds=settings.delivery_timeout_s + settings.delivery_lease_margin_s)


async def test_slack_endpoints_get_a_slack_message(
    client, sessionmaker, http, settings, receiver
) -> None:
    owner = uuid.uuid4()
    await create_webhook(client, owner, receiver.url("/slack"), provider_type="slack")
    await run_fan_out(sessionmaker, experiment_completed(owner))
    await deliver_due(sessionmaker, http, settings=settings)

    [request] = receiver.requests
    message = json.loads(request.body)
    assert set(message) == {"text", "blocks"}
    assert "experiment.completed" in message["text"] and "cnn baseline" in message["text"]
    assert message["blocks"][0]["type"] == "section"


async def test_teams_endpoints_get_an_adaptive_card_in_a_workflows_envelope(
    client, sessionmaker, http, settings, receiver
) -> None:
    owner = uuid.uuid4()
    await create_webhook(client, owner, receiver.url("/teams"), provider_type="teams")
    await run_fan_out(sessionmaker, experiment_completed(owner))
    await deliver_due(sessionmaker, http, settings=settings)

    [request] = receiver.requests
    message = json.loads(request.body)
    assert message["type"] == "message"
    [attachment] = message["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert attachment["content"]["type"] == "AdaptiveCard"
    assert "cnn baseline" in attachment["content"]["body"][0]["text"]


async def test_the_consumer_delivers_a_redelivered_record_once(
    client, db, sessionmaker, http, settings, receiver
) -> None:
    owner = uuid.uuid4()
    await create_webhook(client, owner, receiver.url("/hook"))
    event = experiment_completed(owner)
    consumer = EventConsumer(
        sessionmaker=sessionmaker,
        producer=None,  # type: ignore[arg-type]  (only dead-lettering would use it)
        bootstrap_servers=[],
        group_id="webhooks",
        schema="webhooks",
        service="webhooks",
        handlers=handlers(),
    )
    record = SimpleNamespace(
        topic=event.type,
        partition=0,
        offset=0,
        key=event.subject.encode(),
        value=event.to_json(),
        headers=[],
        timestamp=int(datetime.now(UTC).timestamp() * 1000),
    )

    assert await consumer.process(record) == "processed"  # type: ignore[arg-type]
    assert await consumer.process(record) == "duplicate"  # type: ignore[arg-type]

    assert len(await deliveries(db)) == 1
    await deliver_due(sessionmaker, http, settings=settings)
    assert len(receiver.requests) == 1
