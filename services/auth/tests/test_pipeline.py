from __future__ import annotations

import asyncio
import json

import pytest
from aiokafka import AIOKafkaConsumer

from runyard.auth.config import Settings
from runyard.auth.main import create_app
from runyard.shared.testing import running_app

pytestmark = pytest.mark.pipeline


async def test_registration_reaches_kafka_as_a_cloudevent(settings: Settings) -> None:
    consumer = AIOKafkaConsumer(
        "user.registered",
        bootstrap_servers=settings.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    try:
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
