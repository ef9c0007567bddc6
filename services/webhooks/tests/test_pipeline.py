from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaProducer
from standardwebhooks import Webhook

from runyard.shared.events import CONTENT_TYPE
from runyard.shared.testing import running_app
from runyard.shared.testing.events import experiment_completed
from runyard.webhooks.main import create_app
from services.webhooks.tests.webhooks_helpers import (
    Reply,
    consume,
    create_webhook,
    deliveries,
    eventually,
    logs,
    query,
)

pytestmark = pytest.mark.pipeline


async def test_an_event_on_kafka_reaches_the_receiver_signed(settings, kafka_bootstrap, receiver):
    app = create_app(settings.model_copy(update={"run_workers": True}))
    owner = uuid.uuid4()
    async with running_app(app) as client:
        created = await create_webhook(client, owner, receiver.url("/hook"), enabled_events=["*"])
        event = experiment_completed(owner, name="run")
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
    document = Webhook(created["secret"]).verify(request.body, request.headers)
    assert document["id"] == event.id


@pytest.mark.slow
async def test_a_restart_between_two_attempts_loses_nothing(settings, db, sessionmaker, receiver):
    """The first attempt fails and the service stops; a new process delivers on schedule."""
    workers_on = settings.model_copy(update={"run_workers": True, "delivery_poll_interval_s": 0.1})
    owner = uuid.uuid4()
    receiver.script("/hook", Reply(500))
    event = experiment_completed(owner)
    async with running_app(create_app(workers_on)) as client:
        webhook = await create_webhook(client, owner, receiver.url("/hook"))
        await consume(sessionmaker, event)
        await receiver.wait_for(1)
        await eventually(lambda: logs(db))
    # stopped between the attempts: the retry exists only as a row
    [delivery] = await deliveries(db)
    assert (delivery["status"], delivery["attempt_count"]) == ("pending", 1)
    assert delivery["due_in"] > 0

    async with running_app(create_app(workers_on)):
        await receiver.wait_for(2)
        await eventually(
            lambda: query(
                db, "SELECT 1 FROM webhooks.webhook_deliveries WHERE status = 'succeeded'"
            )
        )

    first, second = receiver.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == event.id
    Webhook(webhook["secret"]).verify(second.body, second.headers)
    assert [log["status"] for log in await logs(db)] == ["failed", "success"]
