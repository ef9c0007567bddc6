"""Notification use cases. They mutate, write outbox events and flush; they never commit."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncSession

from runyard.notifications import notices, repository
from runyard.notifications.config import Settings
from runyard.notifications.links import Links
from runyard.notifications.mailer import RenderedEmail
from runyard.notifications.models import EmailLog, User
from runyard.shared.contracts.auth import UserDeactivated, UserRegistered, UserUpdated
from runyard.shared.contracts.notifications import EmailFailed, EmailSent
from runyard.shared.db import utcnow
from runyard.shared.events import CloudEvent
from runyard.shared.logging import get_logger
from runyard.shared.pagination import cut, decode_cursor
from runyard.shared.readmodel import upsert_if_newer

log = get_logger(__name__)

#: The cursor kind of the email log (``GET /emails``).
EMAILS = "notifications.emails"


@dataclass(frozen=True)
class Options:
    """What the use cases need from the settings, plus the clock (injected by tests)."""

    links: Links
    parked_max_age: timedelta
    throttle_window: timedelta
    digest_hour: int = 8
    digest_weekday: int = 0
    digest_hourly_period_s: int = 3600
    clock: Callable[[], datetime] = utcnow

    @classmethod
    def from_settings(
        cls, settings: Settings, *, clock: Callable[[], datetime] = utcnow
    ) -> Options:
        return cls(
            links=Links.from_settings(settings),
            parked_max_age=timedelta(seconds=settings.email_awaiting_user_max_age_s),
            throttle_window=timedelta(seconds=settings.alert_throttle_window_s),
            digest_hour=settings.digest_hour,
            digest_weekday=settings.digest_weekday,
            digest_hourly_period_s=settings.digest_hourly_period_s,
            clock=clock,
        )


# --- user read model -------------------------------------------------------------------------


#: What the read model keeps of a user, from ``user.registered`` and ``user.updated``.
USER_FIELDS = ("user_id", "username", "email", "full_name", "role", "is_active", "timezone")


async def apply_user_snapshot(
    session: AsyncSession,
    user: UserRegistered | UserUpdated,
    *,
    sequence: int,
    options: Options,
) -> bool:
    """Store the user's state from ``user.registered``/``user.updated``; False if stale.

    Emails parked for the user are released in the same transaction.
    """
    values = {name: getattr(user, name) for name in USER_FIELDS}
    return await store_user(session, {**values, "sequence": sequence}, options=options)


async def deactivate_user(
    session: AsyncSession, user: UserDeactivated, *, sequence: int, options: Options
) -> bool:
    """Mark the user inactive; an unknown user becomes an inactive tombstone row (no email)."""
    tombstone = {"email": None, "is_active": False, "timezone": "UTC", "role": "user"}
    return await store_user(
        session,
        {"user_id": user.user_id, "username": user.username, **tombstone, "sequence": sequence},
        update=("is_active",),
        options=options,
    )


async def store_user(
    session: AsyncSession,
    values: dict[str, Any],
    *,
    update: tuple[str, ...] | None = None,
    options: Options,
) -> bool:
    """Write the user's row unless it holds the same or a newer ``sequence`` (False then), and
    release the emails parked for the user, in the same transaction."""
    user_id: uuid.UUID = values["user_id"]
    await repository.lock_user(session, user_id)
    applied = await upsert_if_newer(session, User, values, key="user_id", update=update)
    if not applied:
        log.info(
            "notifications.user.stale_update_ignored",
            user_id=str(user_id),
            sequence=values["sequence"],
        )
    await release_parked_emails(session, user_id=user_id, options=options)
    return applied


# --- queueing ----------------------------------------------------------------------------------


def idempotency_key(event_id: str, user_id: uuid.UUID) -> str:
    return f"{event_id}:{user_id}"


def unsubscribe_url(event_type: str, user_id: uuid.UUID, options: Options) -> str | None:
    """The one-click unsubscribe link of an email about ``event_type``; none for alerts."""
    if notices.NOTICES[event_type].critical:
        return None
    return options.links.unsubscribe_url(user_id, [event_type], now=options.clock())


def render_for(event: CloudEvent, user: User, options: Options) -> dict[str, Any]:
    rendered = notices.render_notice(
        event,
        user,
        unsubscribe_url=unsubscribe_url(event.type, user.user_id, options),
        links=options.links,
    )
    values = rendered_values(rendered, user)
    if (address := notices.address_of(event)) is not None:
        values["to_address"] = address
    return values


async def queue_email_for_user(
    session: AsyncSession, *, user_id: uuid.UUID, event: CloudEvent, options: Options
) -> uuid.UUID | None:
    """Render and queue the email ``event`` means for the user; at most one per (event, user).

    A user not in the read model yet (``user.registered`` travels on another topic and may come
    later) gets the email parked as ``awaiting_user``, rendered and queued when the user arrives.
    Returns the new row's id, or None when nothing was stored (inactive or address-less user,
    or the email for this event exists already).
    """
    user = await repository.get_user(session, user_id)
    if user is None:
        # Whichever of this and the user's arrival commits first, the other one sees it.
        await repository.lock_user(session, user_id)
        user = await repository.get_user(session, user_id)
    if user is not None and (not user.is_active or not user.email):
        log.info("notifications.email.skipped", user_id=str(user_id), reason="user_inactive")
        return None
    values: dict[str, Any] = {
        "user_id": user_id,
        "template_name": notices.template_name(event.type),
        "event_type": event.type,
        "event_id": event.id,
        "event_data": event.model_dump(mode="json"),
        "idempotency_key": idempotency_key(event.id, user_id),
        "provider": "smtp",
    }
    if user is None:
        values["status"] = "awaiting_user"
    else:
        values.update(render_for(event, user, options))
    email_id = await repository.insert_email(session, values=values)
    if email_id is None:
        log.info("notifications.email.duplicate_ignored", user_id=str(user_id))
    elif user is None:
        log.info("notifications.email.awaiting_user", email_id=str(email_id), user_id=str(user_id))
    else:
        log.info(
            "notifications.email.queued", email_id=str(email_id), template=values["template_name"]
        )
    return email_id


def rendered_values(rendered: RenderedEmail, user: User) -> dict[str, Any]:
    """The columns that make a rendered email due for sending now."""
    return {
        "to_address": user.email,
        "subject": rendered.subject,
        "body_text": rendered.text,
        "body_html": rendered.html,
        "status": "queued",
        "next_attempt_at": func.now(),
        "unsubscribe_url": rendered.unsubscribe_url,
    }


async def release_parked_emails(
    session: AsyncSession, *, user_id: uuid.UUID, options: Options
) -> int:
    """Render and queue the emails parked for a user who is now known; returns how many.

    Emails parked longer than ``max_age`` are skipped (``user_never_known``), and so are all of
    them if the user is inactive (``user_inactive``). The caller holds ``lock_user``.
    """
    expired = await repository.expire_parked_emails(
        session, older_than=options.parked_max_age, user_id=user_id
    )
    if expired:
        log.info("notifications.email.skipped", user_id=str(user_id), reason="user_never_known")
    parked = await repository.parked_emails_for_update(session, user_id)
    user = await repository.get_user(session, user_id) if parked else None
    if user is None:
        return 0
    released = 0
    for email in parked:
        if not user.is_active or not user.email:
            skip(email, "user_inactive")
            continue
        try:
            values = render_for(CloudEvent.model_validate(email.event_data), user, options)
        except Exception as exc:  # one bad stored event must not block the user's own event
            log.exception("notifications.email.render_failed", email_id=str(email.id))
            skip(email, f"render_failed: {type(exc).__name__}")
            continue
        for name, value in values.items():
            setattr(email, name, value)
        released += 1
    await session.flush()
    log.info(
        "notifications.email.released",
        user_id=str(user_id),
        queued=released,
        skipped=len(parked) - released,
    )
    return released


def skip(email: EmailLog, reason: str) -> None:
    email.status = "skipped"
    email.error_message = reason
    email.next_attempt_at = None


# --- delivery outcomes (called by the sender worker) -------------------------------------------


def backoff_delay(retry_count: int, *, base_s: float, cap_s: float) -> timedelta:
    """Exponential backoff with "equal jitter": between half and all of min(cap, base*2^(n-1))."""
    ceiling = min(cap_s, base_s * 2 ** max(retry_count - 1, 0))
    return timedelta(seconds=ceiling / 2 + random.uniform(0, ceiling / 2))


def delivered(email: EmailLog) -> dict[str, Any]:
    """What ``email.sent`` and ``email.failed`` tell of the email (a sending one is rendered)."""
    assert email.to_address is not None and email.subject is not None
    return {
        "email_id": email.id,
        "user_id": email.user_id,
        "to": email.to_address,
        "subject": email.subject,
        "trigger_event_type": email.event_type,
        "trigger_event_id": email.event_id,
    }


def mark_sent(email: EmailLog, *, message_id: str) -> EmailSent:
    """Set a sending email ``sent``; returns its ``email.sent`` event for the outbox."""
    email.status = "sent"
    email.message_id = message_id
    email.sent_at = utcnow()
    email.next_attempt_at = None
    email.error_message = None
    return EmailSent(**delivered(email), message_id=message_id)


def mark_failure(
    email: EmailLog,
    *,
    error: str,
    permanent: bool,
    max_attempts: int,
    backoff_base_s: float,
    backoff_cap_s: float,
) -> EmailFailed | None:
    """Schedule a retry (returns None), or give up: ``failed`` and its ``email.failed`` event."""
    email.error_message = error
    attempts = email.retry_count + 1
    if not permanent and attempts < max_attempts:
        email.retry_count = attempts
        email.status = "queued"
        email.next_attempt_at = func.now() + backoff_delay(
            attempts, base_s=backoff_base_s, cap_s=backoff_cap_s
        )
        return None
    if not permanent:
        email.retry_count = attempts
    email.status = "failed"
    email.next_attempt_at = None
    return EmailFailed(**delivered(email), error=error, retry_count=email.retry_count)


# --- reading -----------------------------------------------------------------------------------


async def list_my_emails(
    session: AsyncSession, *, user_id: uuid.UUID, limit: int, cursor: str | None
) -> tuple[list[EmailLog], str | None]:
    """The user's emails, newest first: one page and the cursor of the next, if any."""
    rows = await repository.list_user_emails(
        session,
        user_id=user_id,
        limit=limit + 1,
        before=decode_cursor(cursor, EMAILS, datetime, uuid.UUID),
    )
    return cut(rows, limit, EMAILS, lambda email: (email.created_at, email.id))
