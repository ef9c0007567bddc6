from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from runyard.auth.config import Settings
from runyard.auth.main import create_app
from runyard.shared.contracts.gateway import ApiKeyUsed
from runyard.shared.events import CONTENT_TYPE
from runyard.shared.testing import running_app
from runyard.shared.testing.events import contract_event
from services.auth.tests.auth_helpers import create_key, fetch, register

pytestmark = pytest.mark.pipeline


# First in the file: the first consumer to join group ``auth`` on the session's broker
# does not wait for an earlier member's session to time out.
async def test_api_key_used_on_kafka_lands_in_the_keys_usage(settings: Settings, db) -> None:
    async with running_app(create_app(settings)) as c:
        user = await register(c, "pipeline")
        created = await create_key(c, user)
    key_id = created.json()["id"]
    event = contract_event(
        ApiKeyUsed(
            key_id=key_id, method="GET", route="/api/v1/experiments", status=200, latency_ms=3.2
        ),
        subject=key_id,
    )
    # Published before the consumer starts: it reads the topic from the earliest offset.
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        await producer.send_and_wait(
            event.topic,
            value=event.to_json(),
            key=key_id.encode(),
            headers=[("content-type", CONTENT_TYPE.encode())],
        )
    finally:
        await producer.stop()

    async def usage_rows() -> list[Any]:
        while True:
            rows = await fetch(db, "SELECT endpoint FROM auth.api_usage")
            if rows:
                return rows
            await asyncio.sleep(0.2)

    async with running_app(create_app(settings.model_copy(update={"run_workers": True}))):
        [row] = await asyncio.wait_for(usage_rows(), timeout=30)
    assert row["endpoint"] == "/api/v1/experiments"
    [key] = await fetch(db, "SELECT last_used_at FROM auth.api_keys")
    assert key["last_used_at"] == event.time


async def test_registration_reaches_kafka_as_a_cloudevent(settings: Settings, db) -> None:
    async with running_app(create_app(settings.model_copy(update={"run_workers": True}))) as c:
        response = await c.post(
            "/api/v1/auth/register",
            json={
                "username": "pipeline",
                "email": "pipeline@example.org",
                "password": "correct horse battery",
            },
        )
        assert response.status_code == 201, response.text
        user_id = response.json()["id"]

        async def relayed() -> None:
            while not await fetch(
                db,
                "SELECT 1 FROM auth.outbox WHERE topic = 'user.registered' "
                "AND published_at IS NOT NULL",
            ):
                await asyncio.sleep(0.2)

        await asyncio.wait_for(relayed(), timeout=30)

    # Read once the relay has published it: a consumer started before the topic exists (the
    # relay's first record creates it on a fresh broker) never sees it within the test.
    consumer = AIOKafkaConsumer(
        "user.registered",
        bootstrap_servers=settings.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    try:

        async def first_for_user() -> dict[str, object]:
            while True:
                batches = await consumer.getmany(timeout_ms=500)
                for records in batches.values():
                    for record in records:
                        if record.key == user_id.encode():
                            return {
                                "headers": dict(record.headers),
                                "value": json.loads(record.value),
                            }

        received = await asyncio.wait_for(first_for_user(), timeout=30)
    finally:
        await consumer.stop()

    assert received["headers"]["content-type"] == b"application/cloudevents+json"
    event = received["value"]
    assert isinstance(event, dict)
    assert (event["type"], event["source"], event["subject"]) == (
        "user.registered",
        "/runyard/auth",
        user_id,
    )
    assert event["data"]["username"] == "pipeline"
