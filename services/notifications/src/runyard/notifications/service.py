"""Notification use cases. They mutate, write outbox events and flush; they never commit."""

from __future__ import annotations

import base64
import binascii
import random
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncSession

from runyard.notifications import repository
from runyard.notifications.mailer import render_email
from runyard.notifications.models import EmailLog, User
from runyard.shared.contracts.notifications import EmailFailed, EmailSent
from runyard.shared.db import utcnow
from runyard.shared.events import CloudEvent, EventPayload, make_event
from runyard.shared.http import ProblemError
from runyard.shared.logging import get_logger
from runyard.shared.outbox import add_event

log = get_logger(__name__)

SOURCE = "/runyard/notifications"


# --- user read model -------------------------------------------------------------------------


async def apply_user_snapshot(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    username: str,
    email: str,
    full_name: str | None,
    role: str,
    is_active: bool,
    timezone: str,
    sequence: int,
) -> bool:
    """Store the user's state from ``user.registered``/``user.updated``; False if stale."""
    applied = await repository.upsert_user(
        session,
        values={
            "user_id": user_id,
            "username": username,
            "email": email,
            "full_name": full_name,
            "role": role,
            "is_active": is_active,
            "timezone": timezone,
            "sequence": sequence,
        },
    )
    if not applied:
        log.info("notifications.user.stale_update_ignored", user_id=str(user_id), sequence=sequence)
    return applied


async def deactivate_user(
    session: AsyncSession, *, user_id: uuid.UUID, username: str, sequence: int
) -> bool:
    applied = await repository.deactivate_user(
        session, user_id=user_id, username=username, sequence=sequence
    )
    if not applied:
        log.info("notifications.user.stale_update_ignored", user_id=str(user_id), sequence=sequence)
    return applied


# --- queueing ----------------------------------------------------------------------------------


def idempotency_key(event_id: str, user_id: uuid.UUID) -> str:
    return f"{event_id}:{user_id}"


async def queue_email_for_user(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    template_name: str,
    context: Mapping[str, Any],
    event: CloudEvent,
) -> uuid.UUID | None:
    """Render and queue one email for ``event``; at most one per (event, user).

    Returns the new row's id, or None when nothing was queued (unknown, inactive or address-less
    user, or the email for this event was queued already).
    """
    user = await repository.get_user(session, user_id)
    if user is None or not user.is_active or not user.email:
        log.info(
            "notifications.email.skipped",
            user_id=str(user_id),
            reason="unknown_user" if user is None else "inactive_or_no_address",
        )
        return None
    rendered = render_email(template_name, {"user": user_context(user), **context})
    email_id = await repository.insert_email(
        session,
        values={
            "user_id": user.user_id,
            "to_address": user.email,
            "subject": rendered.subject,
            "body_text": rendered.text,
            "body_html": rendered.html,
            "template_name": template_name,
            "event_type": event.type,
            "event_id": event.id,
            "event_data": event.data,
            "idempotency_key": idempotency_key(event.id, user.user_id),
            "provider": "smtp",
        },
    )
    if email_id is None:
        log.info("notifications.email.duplicate_ignored", user_id=str(user_id))
    else:
        log.info("notifications.email.queued", email_id=str(email_id), template=template_name)
    return email_id


def user_context(user: User) -> dict[str, Any]:
    return {
        "id": str(user.user_id),
        "username": user.username,
        "display_name": user.full_name or user.username,
        "timezone": user.timezone,
    }


# --- delivery outcomes (called by the sender worker) -------------------------------------------


def backoff_delay(retry_count: int, *, base_s: float, cap_s: float) -> timedelta:
    """Exponential backoff with "equal jitter": between half and all of min(cap, base*2^(n-1))."""
    ceiling = min(cap_s, base_s * 2 ** max(retry_count - 1, 0))
    return timedelta(seconds=ceiling / 2 + random.uniform(0, ceiling / 2))


async def _publish(session: AsyncSession, email: EmailLog, payload: EventPayload) -> None:
    await add_event(session, make_event(payload, source=SOURCE, subject=email.id))


async def record_sent(session: AsyncSession, *, email: EmailLog, message_id: str) -> None:
    email.status = "sent"
    email.message_id = message_id
    email.sent_at = utcnow()
    email.next_attempt_at = None
    email.error_message = None
    await session.flush()
    await _publish(
        session,
        email,
        EmailSent(
            email_id=email.id,
            user_id=email.user_id,
            to=email.to_address,
            subject=email.subject,
            trigger_event_type=email.event_type,
            trigger_event_id=email.event_id,
            message_id=message_id,
        ),
    )


async def record_failure(
    session: AsyncSession,
    *,
    email: EmailLog,
    error: str,
    permanent: bool,
    max_attempts: int,
    backoff_base_s: float,
    backoff_cap_s: float,
) -> bool:
    """Schedule a retry, or give up (``failed`` + ``email.failed``). Returns True if given up."""
    email.error_message = error
    attempts = email.retry_count + 1
    if not permanent and attempts < max_attempts:
        email.retry_count = attempts
        email.status = "queued"
        email.next_attempt_at = func.now() + backoff_delay(
            attempts, base_s=backoff_base_s, cap_s=backoff_cap_s
        )
        await session.flush()
        return False
    if not permanent:
        email.retry_count = attempts
    email.status = "failed"
    email.next_attempt_at = None
    await session.flush()
    await _publish(
        session,
        email,
        EmailFailed(
            email_id=email.id,
            user_id=email.user_id,
            to=email.to_address,
            subject=email.subject,
            trigger_event_type=email.event_type,
            trigger_event_id=email.event_id,
            error=error,
            retry_count=email.retry_count,
        ),
    )
    return True


# --- reading -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class EmailPage:
    items: list[EmailLog]
    next_cursor: str | None


def encode_cursor(email: EmailLog) -> str:
    raw = f"{email.created_at.isoformat()}|{email.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created_at, _, email_id = raw.partition("|")
        parsed = datetime.fromisoformat(created_at)
        if parsed.tzinfo is None:
            raise ValueError("naive timestamp")
        return parsed, uuid.UUID(email_id)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise ProblemError(400, "Bad Request", "Malformed cursor.") from exc


async def list_my_emails(
    session: AsyncSession, *, user_id: uuid.UUID, limit: int, cursor: str | None
) -> EmailPage:
    before = decode_cursor(cursor) if cursor else None
    rows = await repository.list_user_emails(
        session, user_id=user_id, limit=limit + 1, before=before
    )
    items = rows[:limit]
    next_cursor = encode_cursor(items[-1]) if len(rows) > limit else None
    return EmailPage(items=items, next_cursor=next_cursor)
