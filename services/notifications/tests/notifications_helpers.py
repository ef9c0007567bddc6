"""Helpers of the notifications tests, imported as
``services.notifications.tests.notifications_helpers`` (pytest's rootdir-relative name).

The user and experiment events come from ``runyard.shared.testing.events``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from runyard.notifications.config import Settings
from runyard.notifications.consumers import make_handlers
from runyard.shared.contracts.auth import AccountLocked, LoginFailed
from runyard.shared.contracts.experiments import (
    DatasetGenerationCompleted,
    DatasetGenerationFailed,
    DatasetImportCompleted,
    DatasetImportFailed,
    ExperimentFailed,
    HpoCampaignCompleted,
    NasCampaignCompleted,
)
from runyard.shared.contracts.webhooks import WebhookEndpointDisabled
from runyard.shared.events import CloudEvent, EventPayload
from runyard.shared.inbox import Handler
from runyard.shared.testing.events import contract_event

Sessionmaker = async_sessionmaker[AsyncSession]

HANDLERS = make_handlers(Settings(environment="test"))


async def handle(
    sessionmaker: Sessionmaker, event: CloudEvent, handlers: dict[str, Handler] | None = None
) -> None:
    """Run the service's handler for ``event`` in one transaction, as the consumer does."""
    async with sessionmaker() as session, session.begin():
        await (handlers or HANDLERS)[event.type](session, event, event.payload())


class Clock:
    """A settable clock for digest times and throttle windows."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def handlers_at(clock: Callable[[], datetime], **settings: Any) -> dict[str, Handler]:
    return make_handlers(Settings(environment="test", **settings), clock=clock)


def login_failed(user_id: uuid.UUID | None) -> CloudEvent:
    return contract_event(
        LoginFailed(
            username_attempted="ann",
            user_id=user_id,
            ip_address="203.0.113.9",
            user_agent="curl/8.5",
            reason="invalid_password",
            consecutive_failures=3,
        ),
        subject=user_id or "ann",
    )


async def fetch(sessionmaker: Sessionmaker, sql: str, **params: Any) -> list[Any]:
    async with sessionmaker() as session:
        return list((await session.execute(text(sql), params)).all())


async def email_rows(sessionmaker: Sessionmaker) -> list[Any]:
    return await fetch(
        sessionmaker,
        "SELECT id, user_id, to_address, subject, status, retry_count, message_id, error_message,"
        " next_attempt_at, next_attempt_at > now() AS in_future, sent_at, body_text, body_html"
        " FROM notifications.email_logs ORDER BY created_at",
    )


#: published with every change of a user's inbox (the console's unread badge)
INBOX_TOPICS = ("notification.created", "notification.read")


async def outbox_events(sessionmaker: Sessionmaker, *, inbox: bool = False) -> list[Any]:
    """The outbox's events, oldest first; the inbox's own (``INBOX_TOPICS``) only with
    ``inbox=True`` (the email tests are about emails)."""
    events = await fetch(
        sessionmaker, "SELECT topic, key, payload FROM notifications.outbox ORDER BY id"
    )
    return [e for e in events if inbox or e.topic not in INBOX_TOPICS]


def event_of(payload: EventPayload, *, subject: uuid.UUID | str | None = None) -> CloudEvent:
    """``payload`` as its producer would publish it (a new subject unless one is given)."""
    return contract_event(payload, subject=subject or uuid.uuid4())


def experiment_failed(owner_id: uuid.UUID) -> CloudEvent:
    return event_of(
        ExperimentFailed(
            experiment_id=uuid.uuid4(),
            name="lstm <wide>",
            owner_id=owner_id,
            model_type="lstm",
            status="failed",
            final_metrics={"val_loss": 1.75},
            total_epochs=3,
            duration_seconds=95.0,
            error="CUDA out of memory",
        )
    )


def hpo_campaign_completed(owner_id: uuid.UUID) -> CloudEvent:
    return event_of(
        HpoCampaignCompleted(
            campaign_id=uuid.uuid4(),
            name="lr sweep",
            owner_id=owner_id,
            method="tpe",
            metric="val_accuracy",
            direction="maximize",
            trials_completed=20,
            trials_total=20,
            best_experiment_id=uuid.uuid4(),
            best_value=0.9412,
            best_params={"learning_rate": 0.0003, "batch_size": 64},
        )
    )


def nas_campaign_completed(owner_id: uuid.UUID) -> CloudEvent:
    return event_of(
        NasCampaignCompleted(
            campaign_id=uuid.uuid4(),
            name="cnn search",
            owner_id=owner_id,
            search_algorithm="random",
            num_trials=12,
            trials_completed=12,
            best_trial_id=uuid.uuid4(),
            best_accuracy=0.912,
            best_architecture={"layers": 4, "kernel_size": 5},
        )
    )


def dataset_generation_completed(owner_id: uuid.UUID) -> CloudEvent:
    return event_of(
        DatasetGenerationCompleted(
            job_id=uuid.uuid4(),
            name="synthetic pumps",
            owner_id=owner_id,
            dataset_id=uuid.uuid4(),
            num_signals=1200,
            fault_types=["cavitation", "imbalance"],
            duration_seconds=61.0,
        )
    )


def dataset_generation_failed(owner_id: uuid.UUID) -> CloudEvent:
    return event_of(
        DatasetGenerationFailed(
            job_id=uuid.uuid4(), name="synthetic pumps", owner_id=owner_id, error="disk full"
        )
    )


def dataset_import_completed(owner_id: uuid.UUID) -> CloudEvent:
    return event_of(
        DatasetImportCompleted(
            job_id=uuid.uuid4(),
            name="plant A upload",
            owner_id=owner_id,
            dataset_id=uuid.uuid4(),
            num_files=3,
            num_signals=450,
        )
    )


def dataset_import_failed(owner_id: uuid.UUID) -> CloudEvent:
    return event_of(
        DatasetImportFailed(
            job_id=uuid.uuid4(),
            name="plant A upload",
            owner_id=owner_id,
            error="validation failed",
            errors=[{"file": "a.csv", "row": 7, "error": "missing fault_class"}],
        )
    )


def account_locked(user_id: uuid.UUID) -> CloudEvent:
    return event_of(
        AccountLocked(
            user_id=user_id,
            username="ann",
            locked_until=datetime(2026, 1, 5, 10, 15, tzinfo=UTC),
            consecutive_failures=5,
            ip_address="198.51.100.7",
        ),
        subject=user_id,
    )


def webhook_endpoint_disabled(owner_id: uuid.UUID) -> CloudEvent:
    webhook_id = uuid.uuid4()
    return event_of(
        WebhookEndpointDisabled(
            webhook_id=webhook_id,
            owner_id=owner_id,
            name="lab slack",
            url="https://hooks.slack.com/services/***",
            reason="endpoint answered 410 Gone",
            consecutive_failures=1,
        ),
        subject=webhook_id,
    )


async def in_app_rows(sessionmaker: Sessionmaker) -> list[Any]:
    return await fetch(
        sessionmaker,
        "SELECT id, user_id, event_type, title, body, read_at"
        " FROM notifications.in_app_notifications ORDER BY created_at, id",
    )


async def digest_rows(sessionmaker: Sessionmaker) -> list[Any]:
    return await fetch(
        sessionmaker,
        "SELECT id, user_id, event_type, frequency, scheduled_for, included_in_digest,"
        " digest_email_id FROM notifications.email_digest_queue ORDER BY created_at, id",
    )
