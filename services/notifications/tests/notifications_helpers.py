from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from runyard.notifications.config import Settings
from runyard.notifications.consumers import make_handlers
from runyard.shared.contracts.auth import LoginFailed, UserDeactivated, UserRegistered, UserUpdated
from runyard.shared.contracts.experiments import ExperimentCompleted
from runyard.shared.events import CloudEvent, make_event

Sessionmaker = async_sessionmaker[AsyncSession]

HANDLERS = make_handlers(Settings(environment="test"))


async def handle(sessionmaker: Sessionmaker, event: CloudEvent) -> None:
    """Run the service's handler for ``event`` in one transaction, as the consumer does."""
    async with sessionmaker() as session, session.begin():
        await HANDLERS[event.type](session, event, event.payload())


def user_registered(
    user_id: uuid.UUID,
    *,
    email: str = "ann@example.com",
    sequence: int = 1,
    is_active: bool = True,
    timezone: str = "UTC",
) -> CloudEvent:
    return make_event(
        UserRegistered(
            user_id=user_id,
            username="ann",
            email=email,
            full_name="Ann Lee",
            is_active=is_active,
            timezone=timezone,
        ),
        source="/runyard/auth",
        subject=user_id,
        sequence=sequence,
    )


def user_updated(user_id: uuid.UUID, *, email: str, sequence: int) -> CloudEvent:
    return make_event(
        UserUpdated(user_id=user_id, username="ann", email=email, role="user", is_active=True),
        source="/runyard/auth",
        subject=user_id,
        sequence=sequence,
    )


def user_deactivated(user_id: uuid.UUID, *, sequence: int) -> CloudEvent:
    return make_event(
        UserDeactivated(user_id=user_id, username="ann"),
        source="/runyard/auth",
        subject=user_id,
        sequence=sequence,
    )


def experiment_completed(owner_id: uuid.UUID, *, name: str = "cnn baseline") -> CloudEvent:
    experiment_id = uuid.uuid4()
    return make_event(
        ExperimentCompleted(
            experiment_id=experiment_id,
            name=name,
            owner_id=owner_id,
            model_type="cnn1d",
            status="completed",
            final_metrics={"val_accuracy": 0.93125, "val_loss": 0.21},
            best_epoch=7,
            total_epochs=10,
            started_at=datetime(2025, 3, 1, 12, 0, tzinfo=UTC),
            ended_at=datetime(2025, 3, 1, 12, 42, 5, tzinfo=UTC),
            duration_seconds=2525.0,
        ),
        source="/runyard/experiments",
        subject=experiment_id,
        sequence=2,
    )


def login_failed(user_id: uuid.UUID | None) -> CloudEvent:
    return make_event(
        LoginFailed(
            username_attempted="ann",
            user_id=user_id,
            ip_address="203.0.113.9",
            user_agent="curl/8.5",
            reason="invalid_password",
            consecutive_failures=3,
        ),
        source="/runyard/auth",
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


async def outbox_events(sessionmaker: Sessionmaker) -> list[Any]:
    return await fetch(
        sessionmaker, "SELECT topic, key, payload FROM notifications.outbox ORDER BY id"
    )
