"""Durable background loops: the email sender (queued rows in Postgres -> SMTP ->
sent/retry/failed + event) and the digest scheduler (due digest rows -> one digest email)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from runyard.notifications import digests, repository, service
from runyard.notifications.config import Settings
from runyard.notifications.links import Links
from runyard.notifications.mailer import (
    Mailer,
    OutgoingMail,
    SendError,
    compose,
    sender_domain,
)
from runyard.notifications.models import EmailLog
from runyard.notifications.runtime import NotificationsRuntime
from runyard.shared.contracts.notifications import EmailFailed, EmailSent
from runyard.shared.db import utcnow
from runyard.shared.events import CloudEvent, make_event
from runyard.shared.logging import bound, get_logger
from runyard.shared.outbox import add_events, session_source

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
    """One short transaction: requeue stuck rows, lock due ones and mark them ``sending``
    (one statement, ``FOR UPDATE SKIP LOCKED``: a row another sender holds is passed over).

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
        rows = await repository.claim_due_emails(
            session, limit=settings.email_batch_size, domain=sender_domain(settings.mail_from)
        )
    # ck_email_logs_rendered: a queued email has its address, subject and body.
    return [OutgoingEmail(**row) for row in rows]


def prepare(email: OutgoingEmail, settings: Settings) -> OutgoingMail | SendError:
    try:
        return compose(
            mail_from=settings.mail_from,
            to=email.to_address,
            subject=email.subject,
            text=email.body_text,
            html=email.body_html,
            message_id=email.message_id,
            date=utcnow(),
            unsubscribe_url=email.unsubscribe_url,
        )
    except ValueError as exc:  # an address or header no message may carry
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


async def record_outcomes(
    session: AsyncSession,
    claimed: list[OutgoingEmail],
    outcomes: dict[uuid.UUID, SendError | None],
    *,
    settings: Settings,
) -> None:
    """In the caller's transaction: every accepted email ``sent`` in one statement (only rows
    still ``sending``: a claim lost to the stuck-row timeout is not recorded twice) with its
    ``email.sent`` outbox row (one insert for all); each failure on its own locked row."""
    sent_ids = [email.id for email in claimed if outcomes[email.id] is None]
    events: list[CloudEvent] = []
    source = session_source(session)
    for row in await repository.mark_emails_sent(session, sent_ids):
        log.info("notifications.email.sent", email_id=str(row.id), message_id=row.message_id)
        payload = EmailSent(
            email_id=row.id,
            user_id=row.user_id,
            to=row.to_address,
            subject=row.subject,
            trigger_event_type=row.event_type,
            trigger_event_id=row.event_id,
            message_id=row.message_id,
        )
        events.append(make_event(payload, source=source, subject=row.id))
    if len(events) < len(sent_ids):
        recorded = {event.subject for event in events}
        for email_id in sent_ids:
            if str(email_id) not in recorded:
                log.warning("notifications.email.claim_lost", email_id=str(email_id))
    failed = [email for email in claimed if outcomes[email.id] is not None]
    if failed:
        rows = await repository.emails_for_update(session, [email.id for email in failed])
        for email in failed:
            with bound(email_id=str(email.id)):
                _outcome, event = record_outcome(
                    rows.get(email.id), email, outcomes[email.id], settings=settings
                )
            if event is not None:
                events.append(make_event(event, source=source, subject=email.id))
        await session.flush()
    await add_events(session, events)


async def send_due_emails(
    sessionmaker: async_sessionmaker[AsyncSession], *, settings: Settings, mailer: Mailer
) -> int:
    """Claim one batch of due emails, send them (over the mailer's kept-open connections,
    several at once) and record the outcomes in one transaction; returns how many were
    claimed.

    At-least-once on the wire: a crash after the server accepted an email and before the
    batch's outcomes commit leaves its row ``sending``; it is queued again after
    ``email_sending_timeout_s`` and sent again with the same Message-ID."""
    claimed = await claim_due_emails(sessionmaker, settings=settings)
    if not claimed:
        return 0
    outcomes: dict[uuid.UUID, SendError | None] = {}
    ready: list[tuple[OutgoingEmail, OutgoingMail]] = []
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
        await record_outcomes(session, claimed, outcomes, settings=settings)
    return len(claimed)


async def run_email_sender(runtime: NotificationsRuntime) -> None:
    settings = runtime.settings
    mailer = Mailer.from_settings(settings)
    log.info(
        "notifications.email_sender.started",
        smtp_host=mailer.target.hostname,
        connections=mailer.connections,
    )
    try:
        while True:
            seen = runtime.work.generation
            claimed = await send_due_emails(runtime.sessionmaker, settings=settings, mailer=mailer)
            if claimed < settings.email_batch_size:
                await mailer.close_idle()
                # the consumer batch that queues an email wakes the sender at once
                await runtime.work.wait(seen, idle_s=settings.email_poll_interval_s)
    finally:
        await asyncio.shield(mailer.aclose())


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
