"""Outbox writes for auth's events (same transaction as the change, never a direct publish)."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from runyard.auth.models import SessionLog, User
from runyard.shared.contracts.auth import SessionRevoked, UserDeactivated, UserUpdated
from runyard.shared.events import EventPayload, make_event
from runyard.shared.outbox import add_event

SOURCE = "/runyard/auth"


async def publish(
    session: AsyncSession,
    payload: EventPayload,
    *,
    subject: str | uuid.UUID,
    sequence: int | None = None,
) -> None:
    await add_event(session, make_event(payload, source=SOURCE, subject=subject, sequence=sequence))


def bump_version(user: User) -> int:
    """The user's version after one more published change (the events' ``sequence``)."""
    user.version += 1
    return user.version


async def publish_user_updated(session: AsyncSession, user: User) -> None:
    await publish(
        session,
        UserUpdated(
            user_id=user.id,
            username=user.username,
            email=user.email,
            role=user.role,
            is_active=user.is_active,
            timezone=user.timezone,
            full_name=user.full_name,
        ),
        subject=user.id,
        sequence=bump_version(user),
    )


async def publish_user_deactivated(session: AsyncSession, user: User) -> None:
    await publish(
        session,
        UserDeactivated(user_id=user.id, username=user.username),
        subject=user.id,
        sequence=bump_version(user),
    )


async def publish_session_revoked(session: AsyncSession, row: SessionLog, reason: str) -> None:
    await publish(
        session,
        SessionRevoked(session_id=row.id, user_id=row.user_id, reason=reason),
        subject=row.id,
    )
