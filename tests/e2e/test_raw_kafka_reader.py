"""An integrator's view of the topics: plain aiokafka and the CloudEvents SDK, no project code.

What docs/events.md promises a reader of ``experiment.completed``: topic = type, key = the
aggregate id, a structured-mode CloudEvents 1.0 JSON value with ``content-type:
application/cloudevents+json``, and the payload fields of the contract.
"""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from cloudevents.core.bindings.kafka import KafkaMessage, from_kafka_event

from runyard.devstack import Stack

from .helpers import User

pytestmark = pytest.mark.e2e


async def test_a_plain_kafka_consumer_reads_experiment_completed_as_a_cloudevent(
    stack: Stack, api: httpx.AsyncClient, user: User
) -> None:
    consumer = AIOKafkaConsumer(
        "experiment.completed",
        bootstrap_servers=stack.kafka_bootstrap,
        group_id=f"integrator-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        created = await api.post(
            "/api/v1/experiments",
            json={"name": "raw reader", "model_type": "lstm"},
            headers=user.auth,
        )
        assert created.status_code == 201, created.text
        experiment_id = created.json()["id"]
        done = await api.post(
            f"/api/v1/experiments/{experiment_id}/complete",
            json={"final_metrics": {"val_accuracy": 0.91}, "best_epoch": 4, "total_epochs": 5},
            headers=user.auth,
        )
        assert done.status_code == 200, done.text

        async def record_of_this_experiment() -> object:
            async for record in consumer:
                if record.key == experiment_id.encode():
                    return record
            raise AssertionError("consumer stopped")

        record = await asyncio.wait_for(record_of_this_experiment(), timeout=60)
    finally:
        await consumer.stop()

    headers = {name: value for name, value in record.headers}  # type: ignore[attr-defined]
    assert headers["content-type"] == b"application/cloudevents+json"
    event = from_kafka_event(
        KafkaMessage(headers=headers, key=record.key, value=record.value)  # type: ignore[attr-defined]
    )
    assert event.get_specversion() == "1.0"
    assert event.get_type() == "experiment.completed"
    assert event.get_source() == "/runyard/experiments"
    assert event.get_subject() == experiment_id
    assert event.get_dataschema() == "urn:runyard:experiment.completed:1"
    assert event.get_time() is not None
    uuid.UUID(event.get_id())
    data = event.get_data()
    assert isinstance(data, dict)
    assert data["experiment_id"] == experiment_id
    assert data["owner_id"] == user.id
    assert data["model_type"] == "lstm"
    assert data["final_metrics"] == {"val_accuracy": 0.91}
    assert data["best_epoch"] == 4
    assert data["total_epochs"] == 5
