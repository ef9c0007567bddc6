"""A burst of one security alert for one user: one email at once, one summary when the
throttle window ends, not one email per event."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import text

from runyard.notifications.workers import send_due_emails
from runyard.shared.testing.events import user_registered
from services.notifications.tests.notifications_helpers import (
    Clock,
    account_locked,
    email_rows,
    fetch,
    handle,
    handlers_at,
    login_failed,
)


async def make_queued_emails_due(sessionmaker) -> None:
    async with sessionmaker() as session, session.begin():
        await session.execute(
            text(
                "UPDATE notifications.email_logs SET next_attempt_at = now() WHERE status = 'queued'"
            )
        )


async def test_fifty_failed_logins_in_a_minute_make_one_email_now_and_one_summary_later(
    sessionmaker, settings, mailer, smtp_sink
) -> None:
    clock = Clock(datetime.now(UTC))
    handlers = handlers_at(clock)
    user = uuid.uuid4()
    await handle(sessionmaker, user_registered(user), handlers)
    for _ in range(50):
        await handle(sessionmaker, login_failed(user), handlers)
        clock.advance(seconds=1)

    assert await send_due_emails(sessionmaker, settings=settings, mailer=mailer) == 1
    [first] = smtp_sink.messages()
    assert first["Subject"] == "Failed sign-in attempt on your Runyard account"
    [_sent, summary] = await email_rows(sessionmaker)
    assert summary.status == "queued"
    assert summary.in_future  # held until the window ends
    assert summary.subject == "49 more failed sign-in alerts on your Runyard account"

    await make_queued_emails_due(sessionmaker)
    assert await send_due_emails(sessionmaker, settings=settings, mailer=mailer) == 1
    [_first, mail] = smtp_sink.messages()
    assert mail["Subject"] == "49 more failed sign-in alerts on your Runyard account"
    assert mail["List-Unsubscribe"] is None
    body = mail.get_body(("plain",)).get_content()
    assert "the 49 alerts of the same kind that followed" in body
    assert "Failed sign-in from 203.0.113.9 (invalid_password)" in body
    assert len(await email_rows(sessionmaker)) == 2


async def test_alert_after_the_window_ends_is_emailed_at_once_again(sessionmaker) -> None:
    clock = Clock(datetime.now(UTC))
    handlers = handlers_at(clock, alert_throttle_window_s=600.0)
    user = uuid.uuid4()
    await handle(sessionmaker, user_registered(user), handlers)
    await handle(sessionmaker, login_failed(user), handlers)
    clock.advance(minutes=5)
    await handle(sessionmaker, login_failed(user), handlers)
    clock.advance(minutes=6)
    await handle(sessionmaker, login_failed(user), handlers)

    rows = await fetch(
        sessionmaker,
        "SELECT template_name FROM notifications.email_logs ORDER BY created_at",
    )
    assert [r.template_name for r in rows] == ["login_failed", "alert_summary", "login_failed"]


async def test_each_alert_type_has_its_own_window(sessionmaker) -> None:
    clock = Clock(datetime.now(UTC))
    handlers = handlers_at(clock)
    user = uuid.uuid4()
    await handle(sessionmaker, user_registered(user), handlers)
    await handle(sessionmaker, login_failed(user), handlers)
    await handle(sessionmaker, account_locked(user), handlers)

    rows = await fetch(sessionmaker, "SELECT template_name FROM notifications.email_logs")
    assert sorted(r.template_name for r in rows) == ["account_locked", "login_failed"]


async def test_alert_arriving_while_its_summary_is_being_sent_opens_a_new_window(
    sessionmaker,
) -> None:
    clock = Clock(datetime.now(UTC))
    handlers = handlers_at(clock)
    user = uuid.uuid4()
    await handle(sessionmaker, user_registered(user), handlers)
    await handle(sessionmaker, login_failed(user), handlers)
    await handle(sessionmaker, login_failed(user), handlers)
    async with sessionmaker() as session, session.begin():
        await session.execute(
            text(
                "UPDATE notifications.email_logs SET status = 'sending'"
                " WHERE template_name = 'alert_summary'"
            )
        )
    await handle(sessionmaker, login_failed(user), handlers)

    rows = await fetch(
        sessionmaker,
        "SELECT template_name, status FROM notifications.email_logs ORDER BY created_at",
    )
    assert [(r.template_name, r.status) for r in rows] == [
        ("login_failed", "queued"),
        ("alert_summary", "sending"),
        ("login_failed", "queued"),
    ]
