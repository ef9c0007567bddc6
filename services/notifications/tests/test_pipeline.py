"""The running service on the real broker: events in -> email over SMTP -> ``email.sent`` out."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from runyard.notifications.main import create_app
from runyard.shared.events import CloudEvent
from runyard.shared.testing import identity_headers, running_app
from runyard.shared.testing.events import experiment_completed, user_registered
from services.notifications.tests.notifications_helpers import fetch

pytestmark = pytest.mark.pipeline


async def until(predicate: Callable[[], Awaitable[bool]]) -> None:
    """Poll ``predicate`` (a database row, a mail in the sink) for up to a minute."""
    async with asyncio.timeout(60):
        while True:
            if await predicate():
                return
            await asyncio.sleep(0.1)


async def publish(bootstrap: str, *events: CloudEvent) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for event in events:
            await producer.send_and_wait(
                event.type,
                value=event.to_json(),
                key=event.subject.encode(),
                headers=[("content-type", b"application/cloudevents+json")],
            )
    finally:
        await producer.stop()


async def find_on_topic(bootstrap: str, topic: str, match: Callable[[dict], bool]) -> dict:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        async with asyncio.timeout(60):
            while True:
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    for record in records:
                        document = json.loads(record.value)
                        if match(document):
                            return document
    finally:
        await consumer.stop()


async def test_completed_experiment_event_becomes_an_email_and_an_email_sent_event(
    settings, kafka_bootstrap, sessionmaker, smtp_sink
) -> None:
    running = settings.model_copy(
        update={"kafka_bootstrap_servers": kafka_bootstrap, "run_workers": True}
    )
    owner = uuid.uuid4()
    async with running_app(create_app(running)):
        await publish(kafka_bootstrap, user_registered(owner, email="pipeline@example.com"))

        async def user_known() -> bool:
            sql = "SELECT 1 FROM notifications.users WHERE user_id = :id"
            return bool(await fetch(sessionmaker, sql, id=owner))

        await until(user_known)
        completed = experiment_completed(owner, name="pipeline run")
        await publish(kafka_bootstrap, completed)

        async def mail_arrived() -> bool:
            return any(m["To"] == "pipeline@example.com" for m in smtp_sink.messages())

        await until(mail_arrived)
        sent = await find_on_topic(
            kafka_bootstrap,
            "email.sent",
            lambda doc: doc["data"].get("trigger_event_id") == completed.id,
        )

    # only this test's address: other suites' events (auth's sign-up links) share the broker
    [mail] = [m for m in smtp_sink.messages() if m["To"] == "pipeline@example.com"]
    assert mail["Subject"] == 'Experiment "pipeline run" completed'
    assert sent["source"] == "/runyard/notifications"
    assert sent["data"]["to"] == "pipeline@example.com"
    assert sent["data"]["message_id"] == mail["Message-ID"]


@pytest.mark.slow
async def test_experiment_completed_before_the_owner_is_known_is_emailed_when_they_register(
    settings, kafka_bootstrap, sessionmaker, smtp_sink
) -> None:
    running = settings.model_copy(
        update={"kafka_bootstrap_servers": kafka_bootstrap, "run_workers": True}
    )
    owner = uuid.uuid4()
    async with running_app(create_app(running)):
        await publish(kafka_bootstrap, experiment_completed(owner, name="overtaker"))

        async def email_parked() -> bool:
            sql = (
                "SELECT 1 FROM notifications.email_logs"
                " WHERE user_id = :id AND status = 'awaiting_user'"
            )
            return bool(await fetch(sessionmaker, sql, id=owner))

        await until(email_parked)
        await publish(kafka_bootstrap, user_registered(owner, email="overtaken@example.com"))

        async def mail_arrived() -> bool:
            return any(m["To"] == "overtaken@example.com" for m in smtp_sink.messages())

        await until(mail_arrived)

    [mail] = [m for m in smtp_sink.messages() if m["To"] == "overtaken@example.com"]
    assert mail["Subject"] == 'Experiment "overtaker" completed'


async def test_preference_change_reaches_the_broker_as_the_event_webhooks_consumes(
    settings, kafka_bootstrap
) -> None:
    running = settings.model_copy(
        update={"kafka_bootstrap_servers": kafka_bootstrap, "run_workers": True}
    )
    user = uuid.uuid4()
    async with running_app(create_app(running)) as client:
        response = await client.put(
            "/api/v1/notifications/preferences/experiment.failed",
            json={"slack_enabled": False, "webhook_enabled": False},
            headers=identity_headers(user),
        )
        assert response.status_code == 200, response.text
        document = await find_on_topic(
            kafka_bootstrap,
            "notification_preference.updated",
            lambda doc: doc["data"]["user_id"] == str(user),
        )

    event = CloudEvent.model_validate(document)
    payload = event.payload()
    assert event.source == "/runyard/notifications"
    assert event.subject == str(user)
    # The fields the webhooks service's consumer stores to mute deliveries.
    assert payload.model_dump(
        include={"notification_event_type", "slack_enabled", "webhook_enabled"}
    ) == {
        "notification_event_type": "experiment.failed",
        "slack_enabled": False,
        "webhook_enabled": False,
    }
