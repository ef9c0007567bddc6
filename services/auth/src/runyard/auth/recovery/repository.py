"""The queries of password resets and email verifications."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from runyard.auth.models import (
    EmailVerification,
    PasswordResetRequest,
    PasswordResetToken,
    User,
)

# --- reset requests ---------------------------------------------------------------------------


async def nth_recent_reset_request(
    session: AsyncSession, *, column: str, value: str, since: datetime, n: int
) -> datetime | None:
    """When the ``n``-th most recent request whose ``column`` (``email_key``, ``client_key``)
    is ``value`` was made since ``since``, if there were that many: the limit holds until it
    leaves the window."""
    key = getattr(PasswordResetRequest, column)
    result = await session.execute(
        select(PasswordResetRequest.created_at)
        .where(key == value, PasswordResetRequest.created_at > since)
        .order_by(PasswordResetRequest.created_at.desc())
        .offset(n - 1)
        .limit(1)
    )
    return result.scalar_one_or_none()


async def pending_reset_requests_for_update(
    session: AsyncSession, *, limit: int
) -> Sequence[PasswordResetRequest]:
    """The oldest unprocessed requests, locked; other workers skip them."""
    result = await session.execute(
        select(PasswordResetRequest)
        .where(PasswordResetRequest.processed_at.is_(None))
        .order_by(PasswordResetRequest.created_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return result.scalars().all()


async def active_user_by_email_for_update(session: AsyncSession, email: str) -> User | None:
    result = await session.execute(
        select(User)
        .where(func.lower(User.email) == func.lower(email), User.is_active.is_(True))
        .with_for_update()
    )
    return result.scalar_one_or_none()


async def user_by_email(session: AsyncSession, email: str) -> User | None:
    result = await session.execute(select(User).where(func.lower(User.email) == func.lower(email)))
    return result.scalar_one_or_none()


# --- reset tokens -----------------------------------------------------------------------------


async def reset_token_for_update(
    session: AsyncSession, token_hash: str
) -> PasswordResetToken | None:
    result = await session.execute(
        select(PasswordResetToken)
        .where(PasswordResetToken.token_hash == token_hash)
        .with_for_update()
    )
    return result.scalar_one_or_none()


async def use_up_reset_tokens(session: AsyncSession, *, user_id: uuid.UUID, now: datetime) -> None:
    """Every unused token of the user stops working (the one just used among them)."""
    await session.execute(
        update(PasswordResetToken)
        .where(PasswordResetToken.user_id == user_id, PasswordResetToken.used_at.is_(None))
        .values(used_at=now)
    )


# --- email verifications ----------------------------------------------------------------------


async def verification_for_update(
    session: AsyncSession, token_hash: str
) -> EmailVerification | None:
    result = await session.execute(
        select(EmailVerification)
        .where(EmailVerification.token_hash == token_hash)
        .with_for_update()
    )
    return result.scalar_one_or_none()


async def pending_email_change(
    session: AsyncSession, *, user_id: uuid.UUID, now: datetime
) -> EmailVerification | None:
    """The newest email change of the user still waiting for its link."""
    result = await session.execute(
        select(EmailVerification)
        .where(
            EmailVerification.user_id == user_id,
            EmailVerification.purpose == "change",
            EmailVerification.used_at.is_(None),
            EmailVerification.expires_at > now,
        )
        .order_by(EmailVerification.created_at.desc())
        .limit(1)
    )
    return result.scalar_one_or_none()


async def cancel_email_changes(session: AsyncSession, *, user_id: uuid.UUID, now: datetime) -> None:
    """The user's pending email changes end: their links stop working."""
    await session.execute(
        update(EmailVerification)
        .where(
            EmailVerification.user_id == user_id,
            EmailVerification.purpose == "change",
            EmailVerification.used_at.is_(None),
        )
        .values(used_at=now)
    )


async def last_verification_sent_at(
    session: AsyncSession, *, user_id: uuid.UUID, purpose: str
) -> datetime | None:
    result = await session.execute(
        select(func.max(EmailVerification.created_at)).where(
            EmailVerification.user_id == user_id, EmailVerification.purpose == purpose
        )
    )
    return result.scalar_one_or_none()


# --- housekeeping -----------------------------------------------------------------------------


async def delete_stale(session: AsyncSession, *, now: datetime, requests_before: datetime) -> int:
    """Expired tokens and links, and processed requests older than the limits' window."""
    deleted = 0
    for statement in (
        delete(PasswordResetToken).where(PasswordResetToken.expires_at < now),
        delete(EmailVerification).where(EmailVerification.expires_at < now),
        delete(PasswordResetRequest).where(
            PasswordResetRequest.created_at < requests_before,
            PasswordResetRequest.processed_at.is_not(None),
        ),
    ):
        result = await session.execute(statement)
        deleted += int(result.rowcount or 0)  # type: ignore[attr-defined]
    return deleted
