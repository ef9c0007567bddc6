"""A user's path through the whole system, over HTTP only, on the real stack.

Register, log in, register a webhook, create and complete an experiment: the email arrives at the
SMTP sink, the signed POST at a local receiver, and every row the pipeline promises exists.
"""

from __future__ import annotations

import json
import uuid

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from standardwebhooks import Webhook

from runyard.devstack import Stack
from runyard.shared.contracts.experiments import ExperimentCompleted
from runyard.shared.events import make_event

from .helpers import Receiver, User, event_ids, eventually, mails_to

pytestmark = pytest.mark.e2e


async def create_webhook(api: httpx.AsyncClient, user: User, receiver: Receiver) -> str:
    created = await api.post(
        "/api/v1/webhooks",
        json={
            "name": "ci hook",
            "provider_type": "generic",
            "url": receiver.url,
            "enabled_events": ["experiment.completed"],
        },
        headers=user.auth,
    )
    assert created.status_code == 201, created.text
    secret: str = created.json()["secret"]
    assert secret.startswith("whsec_")
    return secret


async def complete_new_experiment(api: httpx.AsyncClient, user: User, name: str) -> str:
    created = await api.post(
        "/api/v1/experiments", json={"name": name, "model_type": "cnn1d"}, headers=user.auth
    )
    assert created.status_code == 201, created.text
    experiment_id: str = created.json()["id"]
    done = await api.post(
        f"/api/v1/experiments/{experiment_id}/complete",
        json={"final_metrics": {"val_accuracy": 0.94}, "best_epoch": 8, "total_epochs": 10},
        headers=user.auth,
    )
    assert done.status_code == 200, done.text
    return experiment_id


async def test_completed_experiment_reaches_owner_by_email_and_signed_webhook(
    stack: Stack, api: httpx.AsyncClient, db: asyncpg.Connection, user: User, receiver: Receiver
) -> None:
    secret = await create_webhook(api, user, receiver)
    experiment_id = await complete_new_experiment(api, user, "pump-fault cnn")

    mails = await eventually(lambda: _async(mails_to(stack.mail_dir, user.email)))
    assert mails[0]["Subject"] == 'Experiment "pump-fault cnn" completed'
    assert mails[0]["Message-ID"]

    def completed_posts() -> list[tuple[dict[str, str], bytes]]:
        return [
            (h, b) for h, b in receiver.requests if json.loads(b)["type"] == "experiment.completed"
        ]

    await eventually(lambda: _async(completed_posts()))
    ((headers, body),) = completed_posts()
    Webhook(secret).verify(body, headers)  # raises if the Standard Webhooks signature is wrong
    event = json.loads(body)
    assert event["type"] == "experiment.completed"
    assert event["subject"] == experiment_id
    assert event["data"]["final_metrics"] == {"val_accuracy": 0.94}
    assert headers["webhook-id"] == event["id"]

    email_row = await eventually(
        lambda: db.fetchrow(
            "SELECT status, to_address FROM notifications.email_logs "
            "WHERE event_id = $1 AND status = 'sent'",
            event["id"],
        )
    )
    assert email_row["to_address"] == user.email
    attempt = await eventually(
        lambda: db.fetchrow(
            "SELECT status, response_status_code FROM webhooks.webhook_logs WHERE event_id = $1",
            event["id"],
        )
    )
    assert (attempt["status"], attempt["response_status_code"]) == ("success", 204)
    published = await db.fetchval(
        "SELECT published_at IS NOT NULL FROM experiments.outbox WHERE event_id = $1", event["id"]
    )
    assert published is True


async def test_failed_login_is_refused_and_emails_the_account_owner(
    stack: Stack, api: httpx.AsyncClient, db: asyncpg.Connection, user: User
) -> None:
    refused = await api.post(
        "/api/v1/auth/login", json={"login": user.username, "password": "not the password!"}
    )
    assert refused.status_code == 401
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.headers["x-request-id"]

    mails = await eventually(lambda: _async(mails_to(stack.mail_dir, user.email)))
    assert mails[0]["Subject"] == "Failed sign-in attempt on your Runyard account"
    history = await db.fetchval(
        "SELECT count(*) FROM auth.login_history WHERE username_attempted = $1 AND NOT success",
        user.username,
    )
    assert history == 1


async def test_gateway_refuses_requests_without_a_valid_token(api: httpx.AsyncClient) -> None:
    missing = await api.post("/api/v1/experiments", json={"name": "x"})
    forged = await api.post(
        "/api/v1/experiments",
        json={"name": "x"},
        headers={"Authorization": "Bearer not.a.jwt", "X-Runyard-User-Id": str(uuid.uuid4())},
    )
    assert missing.status_code == forged.status_code == 401
    assert missing.headers["content-type"] == "application/problem+json"


async def test_same_event_delivered_twice_gives_one_email_and_one_webhook_delivery(
    stack: Stack, api: httpx.AsyncClient, db: asyncpg.Connection, user: User, receiver: Receiver
) -> None:
    await create_webhook(api, user, receiver)
    payload = ExperimentCompleted(
        experiment_id=uuid.uuid4(),
        name="replayed",
        owner_id=uuid.UUID(user.id),
        status="completed",
        final_metrics={"val_accuracy": 0.5},
        total_epochs=1,
    )
    event = make_event(payload, source="/runyard/experiments", subject=payload.experiment_id)
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for _ in range(2):
            await producer.send_and_wait(
                event.topic, value=event.to_json(), key=event.subject.encode()
            )
    finally:
        await producer.stop()

    await eventually(lambda: _async(event.id in event_ids(receiver)))
    await eventually(lambda: _async(mails_to(stack.mail_dir, user.email)))
    consumed_twice = await eventually(
        lambda: db.fetchval(
            "SELECT count(*) = 2 FROM (SELECT consumer FROM notifications.inbox WHERE event_id = $1"
            " UNION ALL SELECT consumer FROM webhooks.inbox WHERE event_id = $1) seen",
            event.id,
        )
    )
    assert consumed_twice
    assert (
        await db.fetchval(
            "SELECT count(*) FROM notifications.email_logs WHERE event_id = $1", event.id
        )
        == 1
    )
    assert (
        await db.fetchval(
            "SELECT count(*) FROM webhooks.webhook_deliveries WHERE event_id = $1", event.id
        )
        == 1
    )
    assert event_ids(receiver) == [event.id]
    assert len(mails_to(stack.mail_dir, user.email)) == 1


async def test_malformed_record_goes_to_dlq_and_the_next_record_is_still_handled(
    stack: Stack, api: httpx.AsyncClient, db: asyncpg.Connection, user: User
) -> None:
    marker = f"garbage-{uuid.uuid4().hex}".encode()
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait("experiment.completed", value=marker, key=b"same-key")
    finally:
        await producer.stop()
    experiment_id = await complete_new_experiment(api, user, "after the garbage")
    await eventually(lambda: _async(mails_to(stack.mail_dir, user.email)))

    consumer = AIOKafkaConsumer(
        "experiment.completed.dlq",
        bootstrap_servers=stack.kafka_bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    dead: list[dict[str, bytes]] = []
    try:

        async def collect() -> bool:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                dead.extend(dict(r.headers) for r in records if r.value == marker)
            return len(dead) >= 3

        await eventually(collect)
    finally:
        await consumer.stop()
    # every consumer group of the topic dead-letters it: experiments (HPO results), notifications,
    # webhooks
    assert sorted(h["dlq-consumer-group"] for h in dead) == [
        b"experiments",
        b"notifications",
        b"webhooks",
    ]
    assert all(h["dlq-reason"] == b"unparseable" for h in dead)
    assert experiment_id


async def test_event_written_while_relay_is_down_is_published_after_restart_with_one_effect(
    stack: Stack, api: httpx.AsyncClient, db: asyncpg.Connection, user: User
) -> None:
    stack.extra_env["EXPERIMENTS_RUN_WORKERS"] = "false"  # the service answers, its relay is dead
    try:
        stack.restart_service("experiments")
        stack.wait_ready("experiments")
        experiment_id = await complete_new_experiment(api, user, "relay was down")
        pending = await db.fetchval(
            "SELECT count(*) FROM experiments.outbox WHERE key = $1 AND published_at IS NULL",
            experiment_id,
        )
        assert pending == 2  # created + completed, committed with the state, not yet published
    finally:
        del stack.extra_env["EXPERIMENTS_RUN_WORKERS"]
    stack.kill("experiments")  # SIGKILL: no graceful anything
    stack.start_service("experiments")
    stack.wait_ready("experiments")

    await eventually(lambda: _async(mails_to(stack.mail_dir, user.email)))
    await eventually(
        lambda: db.fetchval(
            "SELECT count(*) = 0 FROM experiments.outbox WHERE key = $1 AND published_at IS NULL",
            experiment_id,
        )
    )
    rows = await db.fetch(
        "SELECT e.status FROM notifications.email_logs e WHERE e.user_id = $1::uuid "
        "AND e.event_type = 'experiment.completed'",
        user.id,
    )
    assert len(rows) == 1
    assert len(mails_to(stack.mail_dir, user.email)) == 1


async def test_notifications_killed_mid_stream_loses_nothing_and_duplicates_nothing(
    stack: Stack, api: httpx.AsyncClient, db: asyncpg.Connection, user: User
) -> None:
    stack.kill("notifications")
    names = [f"while-down-{i}" for i in range(3)]
    for name in names:
        await complete_new_experiment(api, user, name)
    stack.start_service("notifications")
    stack.wait_ready("notifications")

    mails = await eventually(
        lambda: _async(
            len(mails_to(stack.mail_dir, user.email)) >= 3 and mails_to(stack.mail_dir, user.email)
        )
    )
    assert sorted(m["Subject"] for m in mails) == sorted(
        f'Experiment "{name}" completed' for name in names
    )


async def _async(value: object) -> object:
    return value
