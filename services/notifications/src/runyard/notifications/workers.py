"""The durable email sender: queued rows in Postgres -> SMTP -> sent/retry/failed + event."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from runyard.notifications import repository, service
from runyard.notifications.config import Settings
from runyard.notifications.mailer import Mailer, SendError, build_message, new_message_id
from runyard.shared.db import utcnow
from runyard.shared.logging import bound, get_logger
from runyard.shared.runtime import Runtime

log = get_logger(__name__)


@dataclass(frozen=True)
class OutgoingEmail:
    id: uuid.UUID
    to_address: str
    subject: str
    body_text: str
    body_html: str | None
    message_id: str


async def claim_due_emails(
    sessionmaker: async_sessionmaker[AsyncSession], *, settings: Settings
) -> list[OutgoingEmail]:
    """One short transaction: requeue stuck rows, lock due ones, mark them ``sending``.

    Also skips the emails parked longer than allowed for a user who never arrived.
    """
    async with sessionmaker() as session, session.begin():
        requeued = await repository.requeue_stuck_emails(
            session, older_than=timedelta(seconds=settings.email_sending_timeout_s)
        )
        if requeued:
            log.warning("notifications.email.requeued_stuck", count=requeued)
        expired = await repository.expire_parked_emails(
            session, older_than=timedelta(seconds=settings.email_awaiting_user_max_age_s)
        )
        if expired:
            log.info("notifications.email.skipped", reason="user_never_known", count=expired)
        rows = await repository.claim_due_emails(session, limit=settings.email_batch_size)
        claimed = []
        for row in rows:
            # ck_email_logs_rendered: a queued email has its address, subject and body.
            assert row.to_address is not None and row.subject is not None
            assert row.body_text is not None
            row.status = "sending"
            # Kept across attempts, so a resend after a crash carries the same Message-ID.
            row.message_id = row.message_id or new_message_id(settings.mail_from)
            claimed.append(
                OutgoingEmail(
                    id=row.id,
                    to_address=row.to_address,
                    subject=row.subject,
                    body_text=row.body_text,
                    body_html=row.body_html,
                    message_id=row.message_id,
                )
            )
        await session.flush()
    return claimed


async def deliver(
    sessionmaker: async_sessionmaker[AsyncSession],
    email: OutgoingEmail,
    *,
    settings: Settings,
    mailer: Mailer,
) -> str:
    """Send one claimed email and record the outcome; returns sent, retry or failed."""
    error: SendError | None = None
    try:
        message = build_message(
            mail_from=settings.mail_from,
            to=email.to_address,
            subject=email.subject,
            text=email.body_text,
            html=email.body_html,
            message_id=email.message_id,
            date=utcnow(),
        )
    except ValueError as exc:  # an address or header the email library rejects
        error = SendError(f"invalid message: {exc}"[:2000], permanent=True)
    else:
        try:
            await mailer.send(message)
        except SendError as exc:
            error = exc
    async with sessionmaker() as session, session.begin():
        row = await repository.get_email_for_update(session, email.id)
        if row is None or row.status != "sending":
            log.warning("notifications.email.claim_lost", status=row.status if row else None)
            return "lost"
        if error is None:
            await service.record_sent(session, email=row, message_id=email.message_id)
            log.info("notifications.email.sent", message_id=email.message_id)
            return "sent"
        gave_up = await service.record_failure(
            session,
            email=row,
            error=error.detail,
            permanent=error.permanent,
            max_attempts=settings.email_max_attempts,
            backoff_base_s=settings.email_backoff_base_s,
            backoff_cap_s=settings.email_backoff_cap_s,
        )
        retry_count = row.retry_count
    if gave_up:
        log.warning(
            "notifications.email.failed",
            error=error.detail,
            permanent=error.permanent,
            retry_count=retry_count,
        )
        return "failed"
    log.info("notifications.email.retry_scheduled", error=error.detail, retry_count=retry_count)
    return "retry"


async def send_due_emails(
    sessionmaker: async_sessionmaker[AsyncSession], *, settings: Settings, mailer: Mailer
) -> int:
    """Claim one batch of due emails and deliver each; returns how many were claimed."""
    claimed = await claim_due_emails(sessionmaker, settings=settings)
    for email in claimed:
        with bound(email_id=str(email.id)):
            await deliver(sessionmaker, email, settings=settings, mailer=mailer)
    return len(claimed)


async def run_email_sender(runtime: Runtime) -> None:
    settings = runtime.settings
    assert isinstance(settings, Settings)
    mailer = Mailer.from_settings(settings)
    log.info("notifications.email_sender.started", smtp_host=mailer.target.hostname)
    while True:
        claimed = await send_due_emails(runtime.sessionmaker, settings=settings, mailer=mailer)
        if claimed < settings.email_batch_size:
            await asyncio.sleep(settings.email_poll_interval_s)
