"""Deliveries to real HTTP receivers on 127.0.0.1: formats, signatures, retries, answers."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from standardwebhooks import Webhook

from runyard.shared.contracts.auth import LoginFailed
from runyard.shared.inbox import EventConsumer
from runyard.shared.testing import identity_headers
from runyard.shared.testing.events import as_record, contract_event, experiment_completed
from runyard.webhooks import attempts
from runyard.webhooks.consumers import handlers
from runyard.webhooks.delivery import MAX_RESPONSE_BODY
from runyard.webhooks.workers import deliver_due
from services.webhooks.tests.webhooks_helpers import (
    Reply,
    consume,
    create_webhook,
    deliveries,
    endpoint,
    logs,
    make_due,
    query,
)


async def timed_delivery(sessionmaker: Any, http: Any, settings: Any) -> tuple[datetime, datetime]:
    """Run one delivery pass; return the clock just before and just after it."""
    before = datetime.now(UTC)
    await deliver_due(sessionmaker, http, settings=settings)
    return before, datetime.now(UTC)


def due_between(delivery: Any, window: tuple[datetime, datetime], low: float, high: float) -> bool:
    """The retry was scheduled ``low``..``high`` s after a moment inside ``window`` (the pass
    that recorded it), whatever the time the test took before reading it."""
    before, after = window
    due = delivery["next_attempt_at"]
    return (due - before).total_seconds() >= low and (due - after).total_seconds() <= high


async def test_completed_experiment_is_posted_to_the_owner_signed_per_standard_webhooks(
    client, db, sessionmaker, http, settings, receiver
) -> None:
    owner = uuid.uuid4()
    webhook = await create_webhook(client, owner, receiver.url("/hook"))
    event = experiment_completed(owner, final_metrics={"val_accuracy": 0.93, "val_loss": 0.21})

    await consume(sessionmaker, event)
    assert await deliver_due(sessionmaker, http, settings=settings) == 1

    [request] = receiver.requests
    assert request.method == "POST" and request.path == "/hook"
    assert request.headers["webhook-id"] == event.id
    assert request.headers["Content-Type"] == "application/json"
    document = Webhook(webhook["secret"]).verify(request.body, request.headers)
    assert document["id"] == event.id
    assert document["type"] == "experiment.completed"
    assert document["specversion"] == "1.0"
    assert document["data"]["final_metrics"] == {"val_accuracy": 0.93, "val_loss": 0.21}
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
    assert log["next_attempt_at"] is None
    [delivery] = await deliveries(db)
    assert (delivery["status"], delivery["attempt_count"]) == ("succeeded", 1)

    listed = await client.get(
        f"/api/v1/webhooks/{webhook['id']}/deliveries", headers=identity_headers(owner)
    )
    assert listed.status_code == 200
    [item] = listed.json()["items"]
    assert (item["status"], item["event_type"], item["last_status_code"]) == (
        "succeeded",
        "experiment.completed",
        200,
    )
    assert await deliver_due(sessionmaker, http, settings=settings) == 0
    assert len(receiver.requests) == 1


async def test_a_500_then_a_success_retries_with_the_same_webhook_id_and_clears_the_failures(
    client, db, sessionmaker, http, settings, receiver
) -> None:
    owner = uuid.uuid4()
    webhook = await create_webhook(client, owner, receiver.url("/flaky"))
    receiver.script("/flaky", Reply(500))
    event = experiment_completed(owner)
    await consume(sessionmaker, event)

    window = await timed_delivery(sessionmaker, http, settings)
    [delivery] = await deliveries(db)
    assert (delivery["status"], delivery["attempt_count"]) == ("pending", 1)
    assert due_between(delivery, window, 4, 6)  # Svix: 5 s after the first failure, +-20 %
    assert (await endpoint(db, webhook["id"]))["consecutive_failures"] == 1
    assert await deliver_due(sessionmaker, http, settings=settings) == 0  # not due yet

    await make_due(db)
    await deliver_due(sessionmaker, http, settings=settings)

    first, second = receiver.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == event.id
    for request in (first, second):
        assert Webhook(webhook["secret"]).verify(request.body, request.headers)["id"] == event.id
    assert [(log["status"], log["attempt_number"]) for log in await logs(db)] == [
        ("failed", 1),
        ("success", 2),
    ]
    [delivery] = await deliveries(db)
    assert (delivery["status"], delivery["attempt_count"]) == ("succeeded", 2)
    config = await endpoint(db, webhook["id"])
    assert (config["consecutive_failures"], config["failing_since"]) == (0, None)


async def test_a_500_answer_logs_a_failed_attempt_with_its_next_attempt(
    client, db, sessionmaker, http, settings, receiver
) -> None:
    owner = uuid.uuid4()
    await create_webhook(client, owner, receiver.url("/broken"))
    receiver.statuses["/broken"] = 500
    await consume(sessionmaker, experiment_completed(owner))

    await deliver_due(sessionmaker, http, settings=settings)

    [log] = await logs(db)
    assert (log["status"], log["response_status_code"]) == ("failed", 500)
    assert log["error_message"] == "HTTP 500"
    [delivery] = await deliveries(db)
    assert log["next_attempt_at"] == delivery["next_attempt_at"]
    assert delivery["last_status_code"] == 500


async def test_any_2xx_including_202_is_a_success(
    client, db, sessionmaker, http, settings, receiver
) -> None:
    owner = uuid.uuid4()
    await create_webhook(client, owner, receiver.url("/accepted"))
    receiver.statuses["/accepted"] = 202
    await consume(sessionmaker, experiment_completed(owner))
    await deliver_due(sessionmaker, http, settings=settings)
    [delivery] = await deliveries(db)
    assert (delivery["status"], delivery["last_status_code"]) == ("succeeded", 202)


async def test_a_redirect_is_a_failed_attempt_and_is_not_followed(
    client, db, sessionmaker, http, settings, receiver
) -> None:
    owner = uuid.uuid4()
    await create_webhook(client, owner, receiver.url("/moved"))
    receiver.statuses["/moved"] = 302
    await consume(sessionmaker, experiment_completed(owner))

    await deliver_due(sessionmaker, http, settings=settings)

    assert [r.path for r in receiver.requests] == ["/moved"]
    [log] = await logs(db)
    assert (log["status"], log["response_status_code"]) == ("failed", 302)
    assert "redirect" in log["error_message"]
    [delivery] = await deliveries(db)
    assert (delivery["status"], delivery["attempt_count"]) == ("pending", 1)


async def test_a_receiver_that_hangs_times_out_and_is_retried_no_sooner_than_a_minute(
    client, db, sessionmaker, http, settings, receiver
) -> None:
    owner = uuid.uuid4()
    await create_webhook(client, owner, receiver.url("/slow"))
    receiver.script("/slow", Reply(hang=True))
    await consume(sessionmaker, experiment_completed(owner))

    quick = settings.model_copy(update={"delivery_timeout_s": 0.3})
    await deliver_due(sessionmaker, http, settings=quick)

    [log] = await logs(db)
    assert log["status"] == "failed" and log["response_status_code"] is None
    assert log["error_message"] == "timed out after 0.3 s"
    [delivery] = await deliveries(db)
    assert delivery["status"] == "pending"
    assert delivery["due_in"] >= 59  # the schedule says 5 s; a timeout waits at least 60 s


async def test_a_429_waits_for_its_retry_after_and_holds_back_the_whole_endpoint(
    client, db, sessionmaker, http, settings, receiver
) -> None:
    owner = uuid.uuid4()
    webhook = await create_webhook(client, owner, receiver.url("/busy"))
    receiver.script("/busy", Reply(429, headers={"Retry-After": "120"}))
    await consume(sessionmaker, experiment_completed(owner))

    window = await timed_delivery(sessionmaker, http, settings)
    [delivery] = await deliveries(db)
    assert delivery["status"] == "pending"
    assert due_between(delivery, window, 119, 121)
    assert 115 <= (await endpoint(db, webhook["id"]))["held_for"] <= 121

    # another event for the same endpoint is due now, but the endpoint is held back
    await consume(sessionmaker, experiment_completed(owner))
    assert await deliver_due(sessionmaker, http, settings=settings) == 0
    assert len(receiver.requests) == 1

    await make_due(db)
    assert await deliver_due(sessionmaker, http, settings=settings) == 2
    assert [d["status"] for d in await deliveries(db)] == ["succeeded", "succeeded"]


async def test_a_429_with_a_short_retry_after_still_waits_a_minute_and_a_huge_one_is_capped(
    client, db, sessionmaker, http, settings, receiver
) -> None:
    owner = uuid.uuid4()
    await create_webhook(client, owner, receiver.url("/short"), enabled_events=["*"])
    receiver.script("/short", Reply(429, headers={"Retry-After": "1"}))
    await consume(sessionmaker, experiment_completed(owner))
    window = await timed_delivery(sessionmaker, http, settings)
    [delivery] = await deliveries(db)
    assert due_between(delivery, window, 59, 61)

    await query(db, "DELETE FROM webhooks.webhook_deliveries")
    await make_due(db)
    receiver.script("/short", Reply(429, headers={"Retry-After": str(7 * 24 * 3600)}))
    await consume(sessionmaker, experiment_completed(owner))
    window = await timed_delivery(sessionmaker, http, settings)
    [delivery] = await deliveries(db)
    assert due_between(delivery, window, settings.retry_after_max_s, settings.retry_after_max_s)


async def test_the_response_body_is_stored_cut_at_20_kb(
    client, db, sessionmaker, http, settings, receiver
) -> None:
    owner = uuid.uuid4()
    await create_webhook(client, owner, receiver.url("/chatty"))
    receiver.script("/chatty", Reply(200, body="x" * (MAX_RESPONSE_BODY * 3)))
    await consume(sessionmaker, experiment_completed(owner))
    await deliver_due(sessionmaker, http, settings=settings)
    [log] = await logs(db)
    assert log["status"] == "success"
    assert log["response_body"] == "x" * 20 * 1024


async def test_custom_headers_from_the_settings_are_sent(
    client, sessionmaker, http, settings, receiver
) -> None:
    owner = uuid.uuid4()
    await create_webhook(
        client,
        owner,
        receiver.url("/auth"),
        settings={"headers": {"Authorization": "Bearer t0ken", "X-Team": "lab"}},
    )
    await consume(sessionmaker, experiment_completed(owner))
    await deliver_due(sessionmaker, http, settings=settings)
    [request] = receiver.requests
    assert request.headers["Authorization"] == "Bearer t0ken"
    assert request.headers["X-Team"] == "lab"


async def test_the_same_event_consumed_twice_is_delivered_once(
    client, db, sessionmaker, http, settings, receiver
) -> None:
    owner = uuid.uuid4()
    await create_webhook(client, owner, receiver.url("/hook"))
    event = experiment_completed(owner)
    await consume(sessionmaker, event)
    await consume(sessionmaker, event)
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

    await consume(sessionmaker, experiment_completed(owner))

    assert [str(d["webhook_id"]) for d in await deliveries(db)] == [matching["id"]]


async def test_events_without_an_owner_are_not_delivered(
    client, db, sessionmaker, receiver
) -> None:
    await create_webhook(client, uuid.uuid4(), receiver.url("/hook"), enabled_events=["*"])
    event = contract_event(
        LoginFailed(username_attempted="ghost", reason="unknown user"), subject="ghost"
    )
    await consume(sessionmaker, event)
    assert await deliveries(db) == []


async def test_an_unreachable_endpoint_is_a_failed_attempt(
    client, db, sessionmaker, http, settings
) -> None:
    owner = uuid.uuid4()
    await create_webhook(client, owner, "http://127.0.0.1:1/hook")
    await consume(sessionmaker, experiment_completed(owner))

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
    await consume(sessionmaker, experiment_completed(owner))
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
    await consume(sessionmaker, experiment_completed(owner))
    async with sessionmaker() as session, session.begin():
        [claimed] = await attempts.claim_due_deliveries(
            session, limit=10, lease=settings_lease(settings)
        )
    # the worker "crashed" here: nothing was recorded

    assert await deliver_due(sessionmaker, http, settings=settings) == 0
    [delivery] = await deliveries(db)
    assert delivery["status"] == "pending" and delivery["due_in"] > 0
    assert claimed.attempt_number == 1

    await make_due(db)
    assert await deliver_due(sessionmaker, http, settings=settings) == 1
    assert len(receiver.requests) == 1


def settings_lease(settings):
    from datetime import timedelta

    return timedelta(seconds=settings.delivery_timeout_s + settings.delivery_lease_margin_s)


async def test_slack_endpoints_get_text_and_blocks_summarising_the_experiment(
    client, sessionmaker, http, settings, receiver
) -> None:
    owner = uuid.uuid4()
    await create_webhook(client, owner, receiver.url("/slack"), provider_type="slack")
    event = experiment_completed(
        owner,
        name="pump <fault> cnn",
        final_metrics={"val_accuracy": 0.93, "val_loss": 0.21},
        duration_seconds=3725.0,
    )
    await consume(sessionmaker, event)
    await deliver_due(sessionmaker, http, settings=settings)

    [request] = receiver.requests
    assert "webhook-signature" not in request.headers
    message = json.loads(request.body)
    assert set(message) == {"text", "blocks"}
    assert "pump &lt;fault&gt; cnn" in message["text"] and "completed" in message["text"]
    assert "val_accuracy 0.93" in message["text"]
    blocks = json.dumps(message["blocks"])
    link = f"http://127.0.0.1:8000/api/v1/experiments/{event.data['experiment_id']}"
    for shown in ("*Status*\\ncompleted", "*Duration*\\n1 h 2 min", "*val_loss*\\n0.21", link):
        assert shown in blocks, shown


async def test_teams_endpoints_get_an_adaptive_card_in_a_workflows_envelope(
    client, sessionmaker, http, settings, receiver
) -> None:
    owner = uuid.uuid4()
    await create_webhook(client, owner, receiver.url("/teams"), provider_type="teams")
    event = experiment_completed(owner, final_metrics={"val_accuracy": 0.93, "val_loss": 0.21})
    await consume(sessionmaker, event)
    await deliver_due(sessionmaker, http, settings=settings)

    [request] = receiver.requests
    message = json.loads(request.body)
    assert message["type"] == "message"
    [attachment] = message["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard"
    assert "cnn baseline" in card["body"][0]["text"]
    facts = {f["title"]: f["value"] for f in card["body"][1]["facts"]}
    assert facts["Status"] == "completed" and facts["val_accuracy"] == "0.93"
    assert card["actions"][0]["url"].endswith(f"/experiments/{event.data['experiment_id']}")


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
    record = as_record(event, offset=0)

    assert await consumer.process(record) == "processed"
    assert await consumer.process(record) == "duplicate"

    assert len(await deliveries(db)) == 1
    await deliver_due(sessionmaker, http, settings=settings)
    assert len(receiver.requests) == 1


async def test_attempts_show_up_in_the_prometheus_metrics(
    client, sessionmaker, http, settings, receiver
) -> None:
    owner = uuid.uuid4()
    await create_webhook(client, owner, receiver.url("/measured"), provider_type="teams")
    receiver.script("/measured", Reply(500))
    await consume(sessionmaker, experiment_completed(owner))
    await deliver_due(sessionmaker, http, settings=settings)

    text = (await client.get("/metrics")).text
    assert (
        'runyard_webhook_delivery_attempts_total{outcome="http_error",provider="teams",'
        'trigger="event"}' in text
    )
    assert 'runyard_webhook_delivery_duration_seconds_bucket{le="0.01",outcome="http_error"' in text
