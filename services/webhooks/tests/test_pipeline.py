from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaProducer
from standardwebhooks import Webhook

from runyard.shared.contracts.experiments import ExperimentCompleted
from runyard.shared.events import CONTENT_TYPE, make_event
from runyard.shared.testing import identity_headers, running_app
from runyard.webhooks.main import create_app

pytestmark = pytest.mark.pipeline


async def test_an_event_on_kafka_reaches_the_receiver_signed(settings, kafka_bootstrap, receiver):
    app = create_app(settings.model_copy(update={"run_workers": True}))
    owner = uuid.uuid4()
    async with running_app(app) as client:
        created = await client.post(
            "/api/v1/webhooks",
            json={"name": "hook", "url": receiver.url("/hook"), "enabled_events": ["*"]},
            headers=identity_headers(owner),
        )
        assert created.status_code == 201, created.text
        experiment_id = uuid.uuid4()
        event = make_event(
            ExperimentCompleted(
                experiment_id=experiment_id, name="run", owner_id=owner, status="completed"
            ),
            source="/runyard/experiments",
            subject=experiment_id,
        )
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        try:
            for _ in range(2):  # redelivered: must still arrive once
                await producer.send_and_wait(
                    event.topic,
                    event.to_json(),
                    key=event.subject.encode(),
                    headers=[("content-type", CONTENT_TYPE.encode())],
                )
        finally:
            await producer.stop()

        await asyncio.wait_for(receiver.arrived.wait(), timeout=90)
        await asyncio.sleep(1.0)  # room for a wrong second delivery to show up

    [request] = receiver.requests
    document = Webhook(created.json()["secret"]).verify(request.body, request.headers)
    assert document["id"] == event.id
