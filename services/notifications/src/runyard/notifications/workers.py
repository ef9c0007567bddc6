"""Durable background loops: the email sender (queued rows in Postgres -> SMTP ->
sent/retry/failed + event) and the digest scheduler (due digest rows -> one digest email)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from runyard.notifications import digests, repository, service
from runyard.notifications.config import Settings
from runyard.notifications.links import Links
from runyard.notifications.mailer import Mailer, SendError, build_message, new_message_id
from runyard.notifications.models import EmailLog
from runyard.notifications.runtime import NotificationsRuntime
from runyard.shared.contracts.notifications import EmailFailed, EmailSent
from runyard.shared.db import utcnow
from runyard.shared.logging import bound, get_logger
from runyard.shared.outbox import emit

log = get_logger(__name__)


@dataclass(frozen=True)
class OutgoingEmail:
    id: uuid.UUID
    to_address: str
    subject: str
    body_text: str
    body_html: str | None
    message_id: str
    unsubscribe_url: str | None = None


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
                    unsubscribe_url=row.unsubscribe_url,
                )
            )
        await session.flush()
    return claimed


def prepare(email: OutgoingEmail, settings: Settings) -> EmailMessage | SendError:
    try:
        return build_message(
            mail_from=settings.mail_from,
            to=email.to_address,
            subject=email.subject,
            text=email.body_text,
            html=email.body_html,
            message_id=email.message_id,
            date=utcnow(),
            unsubscribe_url=email.unsubscribe_url,
        )
    except ValueError as exc:  # an address or header the email library rejects
        return SendError(f"invalid message: {exc}"[:2000], permanent=True)


def record_outcome(
    row: EmailLog | None, email: OutgoingEmail, error: SendError | None, *, settings: Settings
) -> tuple[str, EmailSent | EmailFailed | None]:
    """Record one send's outcome on its locked row: (sent | retry | failed | lost, event)."""
    if row is None or row.status != "sending":
        log.warning("notifications.email.claim_lost", status=row.status if row else None)
        return "lost", None
    if error is None:
        log.info("notifications.email.sent", message_id=email.message_id)
        return "sent", service.mark_sent(row, message_id=email.message_id)
    event = service.mark_failure(
        row,
        error=error.detail,
        permanent=error.permanent,
        max_attempts=settings.email_max_attempts,
        backoff_base_s=settings.email_backoff_base_s,
        backoff_cap_s=settings.email_backoff_cap_s,
    )
    if event is not None:
        log.warning(
            "notifications.email.failed",
            error=error.detail,
            permanent=error.permanent,
            retry_count=row.retry_count,
        )
        return "failed", event
    log.info("notifications.email.retry_scheduled", error=error.detail, retry_count=row.retry_count)
    return "retry", None


async def send_due_emails(
    sessionmaker: async_sessionmaker[AsyncSession], *, settings: Settings, mailer: Mailer
) -> int:
    """Claim one batch of due emails, send them over one SMTP connection and record the
    outcomes in one transaction; returns how many were claimed."""
    claimed = await claim_due_emails(sessionmaker, settings=settings)
    if not claimed:
        return 0
    outcomes: dict[uuid.UUID, SendError | None] = {}
    ready: list[tuple[OutgoingEmail, EmailMessage]] = []
    for email in claimed:
        message = prepare(email, settings)
        if isinstance(message, SendError):
            outcomes[email.id] = message
        else:
            ready.append((email, message))
    errors = await mailer.send_many([message for _, message in ready])
    for (email, _), error in zip(ready, errors, strict=True):
        outcomes[email.id] = error
    async with sessionmaker() as session, session.begin():
        rows = await repository.emails_for_update(session, [email.id for email in claimed])
        for email in claimed:
            with bound(email_id=str(email.id)):
                _outcome, event = record_outcome(
                    rows.get(email.id), email, outcomes[email.id], settings=settings
                )
            if event is not None:
                await emit(session, event, subject=email.id)
        await session.flush()
    return len(claimed)


async def run_email_sender(runtime: NotificationsRuntime) -> None:
    settings = runtime.settings
    mailer = Mailer.from_settings(settings)
    log.info("notifications.email_sender.started", smtp_host=mailer.target.hostname)
    while True:
        claimed = await send_due_emails(runtime.sessionmaker, settings=settings, mailer=mailer)
        if claimed < settings.email_batch_size:
            await asyncio.sleep(settings.email_poll_interval_s)


async def schedule_due_digests(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    settings: Settings,
    clock: Callable[[], datetime] = utcnow,
) -> digests.DigestRun:
    """One transaction: build the digests due at ``clock()`` for a batch of users."""
    async with sessionmaker() as session, session.begin():
        return await digests.build_due_digests(
            session,
            now=clock(),
            links=Links.from_settings(settings),
            batch_users=settings.digest_batch_users,
            max_items=settings.digest_max_items_per_type,
        )


async def run_digest_scheduler(runtime: NotificationsRuntime) -> None:
    settings = runtime.settings
    log.info("notifications.digest_scheduler.started")
    while True:
        run = await schedule_due_digests(runtime.sessionmaker, settings=settings)
        if run.digests < settings.digest_batch_users:
            await asyncio.sleep(settings.digest_poll_interval_s)
