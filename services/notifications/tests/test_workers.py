from __future__ import annotations

import uuid

from sqlalchemy import text

from runyard.notifications.mailer import Mailer
from runyard.notifications.service import backoff_delay
from runyard.notifications.workers import send_due_emails
from runyard.shared.testing import free_port
from runyard.shared.testing.events import experiment_completed, user_registered
from services.notifications.tests.notifications_helpers import (
    email_rows,
    fetch,
    handle,
    outbox_events,
)


async def queue_one_email(sessionmaker) -> None:
    owner = uuid.uuid4()
    await handle(sessionmaker, user_registered(owner))
    await handle(sessionmaker, experiment_completed(owner))


async def test_permanent_smtp_rejection_fails_the_email_at_once(
    sessionmaker, settings, mailer, smtp_sink
) -> None:
    smtp_sink.reply = "550 5.1.1 Mailbox unavailable"
    await queue_one_email(sessionmaker)
    await send_due_emails(sessionmaker, settings=settings, mailer=mailer)

    [row] = await email_rows(sessionmaker)
    assert row.status == "failed"
    assert row.retry_count == 0
    assert row.next_attempt_at is None
    assert "550" in row.error_message
    [event] = await outbox_events(sessionmaker)
    assert event.topic == "email.failed"
    assert event.key == str(row.id)
    assert "550" in event.payload["data"]["error"]
    assert smtp_sink.messages() == []


async def test_temporary_smtp_rejection_schedules_a_retry_later(
    sessionmaker, settings, mailer, smtp_sink
) -> None:
    smtp_sink.reply = "451 4.3.0 Try again later"
    await queue_one_email(sessionmaker)
    await send_due_emails(sessionmaker, settings=settings, mailer=mailer)

    [row] = await email_rows(sessionmaker)
    assert row.status == "queued"
    assert row.retry_count == 1
    assert row.in_future
    assert "451" in row.error_message
    assert await outbox_events(sessionmaker) == []
    # Not due yet: the next pass claims nothing.
    assert await send_due_emails(sessionmaker, settings=settings, mailer=mailer) == 0


async def test_retry_that_becomes_due_is_sent_with_the_same_message_id(
    sessionmaker, settings, mailer, smtp_sink
) -> None:
    smtp_sink.reply = "451 4.3.0 Try again later"
    await queue_one_email(sessionmaker)
    await send_due_emails(sessionmaker, settings=settings, mailer=mailer)
    [first] = await email_rows(sessionmaker)

    smtp_sink.reply = "250 OK"
    async with sessionmaker() as session, session.begin():
        await session.execute(text("UPDATE notifications.email_logs SET next_attempt_at = now()"))
    assert await send_due_emails(sessionmaker, settings=settings, mailer=mailer) == 1

    [mail] = smtp_sink.messages()
    [row] = await email_rows(sessionmaker)
    assert row.status == "sent"
    assert row.retry_count == 1
    assert mail["Message-ID"] == first.message_id == row.message_id


async def test_temporary_failures_give_up_after_max_attempts(
    sessionmaker, settings, mailer, smtp_sink
) -> None:
    smtp_sink.reply = "451 4.3.0 Try again later"
    await queue_one_email(sessionmaker)
    last_try = settings.model_copy(update={"email_max_attempts": 1})
    await send_due_emails(sessionmaker, settings=last_try, mailer=mailer)

    [row] = await email_rows(sessionmaker)
    assert row.status == "failed"
    assert row.retry_count == 1
    assert [e.topic for e in await outbox_events(sessionmaker)] == ["email.failed"]


async def test_unreachable_smtp_server_schedules_a_retry(sessionmaker, settings) -> None:
    await queue_one_email(sessionmaker)
    nowhere = settings.model_copy(update={"smtp_url": f"smtp://127.0.0.1:{free_port()}"})
    await send_due_emails(sessionmaker, settings=nowhere, mailer=Mailer.from_settings(nowhere))

    [row] = await email_rows(sessionmaker)
    assert row.status == "queued"
    assert row.retry_count == 1
    assert row.in_future
    assert await outbox_events(sessionmaker) == []


async def test_email_stuck_in_sending_is_requeued_and_sent(
    sessionmaker, settings, mailer, smtp_sink
) -> None:
    await queue_one_email(sessionmaker)
    async with sessionmaker() as session, session.begin():
        await session.execute(
            text(
                "UPDATE notifications.email_logs SET status = 'sending',"
                " updated_at = now() - interval '10 minutes'"
            )
        )
    assert await send_due_emails(sessionmaker, settings=settings, mailer=mailer) == 1

    assert len(smtp_sink.messages()) == 1
    [row] = await email_rows(sessionmaker)
    assert row.status == "sent"


async def test_email_being_sent_elsewhere_is_not_claimed_again(
    sessionmaker, settings, mailer, smtp_sink
) -> None:
    await queue_one_email(sessionmaker)
    async with sessionmaker() as session, session.begin():
        await session.execute(text("UPDATE notifications.email_logs SET status = 'sending'"))
    assert await send_due_emails(sessionmaker, settings=settings, mailer=mailer) == 0
    assert smtp_sink.messages() == []


async def test_locked_due_email_is_skipped_by_a_second_sender(
    sessionmaker, settings, mailer, smtp_sink
) -> None:
    await queue_one_email(sessionmaker)
    async with sessionmaker() as holder, holder.begin():
        await holder.execute(text("SELECT id FROM notifications.email_logs FOR UPDATE"))
        assert await send_due_emails(sessionmaker, settings=settings, mailer=mailer) == 0
    assert await send_due_emails(sessionmaker, settings=settings, mailer=mailer) == 1
    [row] = await fetch(sessionmaker, "SELECT status FROM notifications.email_logs")
    assert row.status == "sent"


def test_backoff_grows_exponentially_with_jitter_and_is_capped() -> None:
    for attempt, ceiling in [(1, 5.0), (2, 10.0), (3, 20.0), (12, 3600.0)]:
        for _ in range(50):
            delay = backoff_delay(attempt, base_s=5.0, cap_s=3600.0).total_seconds()
            assert ceiling / 2 <= delay <= ceiling


async def test_one_batch_goes_over_one_connection_and_a_refusal_does_not_stop_the_others(
    sessionmaker, settings, smtp_sink
) -> None:
    mailer = Mailer.from_settings(settings.model_copy(update={"smtp_connections": 1}))
    users = [uuid.uuid4() for _ in range(3)]
    for i, user in enumerate(users):
        await handle(sessionmaker, user_registered(user, email=f"u{i}@example.com"))
        await handle(sessionmaker, experiment_completed(user))
    smtp_sink.replies["u1@example.com"] = "550 5.1.1 Mailbox unavailable"

    assert await send_due_emails(sessionmaker, settings=settings, mailer=mailer) == 3

    assert sorted(m["To"] for m in smtp_sink.messages()) == ["u0@example.com", "u2@example.com"]
    assert len(smtp_sink.sessions) == 1
    rows = await email_rows(sessionmaker)
    assert sorted((r.to_address, r.status) for r in rows) == [
        ("u0@example.com", "sent"),
        ("u1@example.com", "failed"),
        ("u2@example.com", "sent"),
    ]
