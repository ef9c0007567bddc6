"""An email whose recipient is not known yet (``user.registered`` travels on another topic and may
come later) waits for the user instead of being lost."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text

from runyard.notifications.workers import send_due_emails
from runyard.shared.events import CloudEvent
from runyard.shared.testing.events import experiment_completed, user_deactivated, user_registered
from services.notifications.tests.notifications_helpers import (
    HANDLERS,
    email_rows,
    fetch,
    handle,
    login_failed,
)


async def make_parked_emails_older(sessionmaker, *, days: int) -> None:
    async with sessionmaker() as session, session.begin():
        await session.execute(
            text(
                "UPDATE notifications.email_logs SET created_at = created_at - make_interval("
                "days => :days) WHERE status = 'awaiting_user'"
            ),
            {"days": days},
        )


async def test_completed_experiment_before_registration_is_sent_once_the_user_arrives(
    sessionmaker, settings, mailer, smtp_sink
) -> None:
    owner = uuid.uuid4()
    completed = experiment_completed(owner, name="early bird")
    await handle(sessionmaker, completed)
    await handle(sessionmaker, completed)  # redelivered while waiting

    [parked] = await email_rows(sessionmaker)
    assert parked.status == "awaiting_user"
    assert parked.to_address is None
    assert await send_due_emails(sessionmaker, settings=settings, mailer=mailer) == 0
    assert smtp_sink.messages() == []

    await handle(sessionmaker, user_registered(owner, email="late@example.com"))

    [queued] = await email_rows(sessionmaker)
    assert queued.id == parked.id
    assert queued.status == "queued"
    assert queued.to_address == "late@example.com"
    assert queued.subject == 'Experiment "early bird" completed'
    assert not queued.in_future

    assert await send_due_emails(sessionmaker, settings=settings, mailer=mailer) == 1
    [mail] = smtp_sink.messages()
    assert mail["To"] == "late@example.com"
    assert mail["Subject"] == 'Experiment "early bird" completed'
    body = mail.get_body(("plain",)).get_content()
    assert "Hello Ann Lee," in body
    assert "val_accuracy: 0.9313" in body

    await handle(sessionmaker, completed)  # redelivered after the release
    [sent] = await email_rows(sessionmaker)
    assert (sent.id, sent.status) == (parked.id, "sent")
    assert await send_due_emails(sessionmaker, settings=settings, mailer=mailer) == 0
    assert len(smtp_sink.messages()) == 1


async def test_failed_login_before_registration_is_rendered_in_the_users_timezone(
    sessionmaker, settings, mailer, smtp_sink
) -> None:
    user = uuid.uuid4()
    attempt = login_failed(user)
    await handle(sessionmaker, attempt)
    await handle(sessionmaker, user_registered(user, timezone="Asia/Tokyo"))
    await send_due_emails(sessionmaker, settings=settings, mailer=mailer)

    [mail] = smtp_sink.messages()
    assert mail["Subject"] == "Failed sign-in attempt on your Runyard account"
    when = attempt.time.astimezone(ZoneInfo("Asia/Tokyo")).strftime("%Y-%m-%d %H:%M:%S JST")
    assert f"When:       {when}" in mail.get_body(("plain",)).get_content()


@pytest.mark.parametrize(
    "arrival",
    [
        lambda user: user_registered(user, is_active=False),
        lambda user: user_deactivated(user, sequence=2),
    ],
    ids=["registered_inactive", "deactivation_overtook_registration"],
)
async def test_parked_emails_of_a_user_who_arrives_deactivated_are_not_sent(
    sessionmaker, settings, mailer, smtp_sink, arrival: Callable[[uuid.UUID], CloudEvent]
) -> None:
    user = uuid.uuid4()
    completed = experiment_completed(user)
    await handle(sessionmaker, completed)
    await handle(sessionmaker, login_failed(user))

    await handle(sessionmaker, arrival(user))
    await handle(sessionmaker, completed)  # redelivered after

    rows = await email_rows(sessionmaker)
    assert [(r.status, r.error_message) for r in rows] == [("skipped", "user_inactive")] * 2
    assert await send_due_emails(sessionmaker, settings=settings, mailer=mailer) == 0
    assert smtp_sink.messages() == []


async def test_email_parked_longer_than_allowed_is_not_released(
    sessionmaker, settings, mailer, smtp_sink
) -> None:
    user = uuid.uuid4()
    await handle(sessionmaker, experiment_completed(user, name="long ago"))
    await make_parked_emails_older(sessionmaker, days=8)
    await handle(sessionmaker, experiment_completed(user, name="recent"))

    await handle(sessionmaker, user_registered(user))

    rows = await email_rows(sessionmaker)
    assert [(r.status, r.error_message) for r in rows] == [
        ("skipped", "user_never_known"),
        ("queued", None),
    ]
    await send_due_emails(sessionmaker, settings=settings, mailer=mailer)
    assert [m["Subject"] for m in smtp_sink.messages()] == ['Experiment "recent" completed']


async def test_sender_skips_emails_parked_too_long_for_a_user_who_never_arrives(
    sessionmaker, settings, mailer
) -> None:
    await handle(sessionmaker, experiment_completed(uuid.uuid4()))
    await make_parked_emails_older(sessionmaker, days=8)
    await handle(sessionmaker, experiment_completed(uuid.uuid4()))

    assert await send_due_emails(sessionmaker, settings=settings, mailer=mailer) == 0

    rows = await email_rows(sessionmaker)
    assert [(r.status, r.error_message) for r in rows] == [
        ("skipped", "user_never_known"),
        ("awaiting_user", None),
    ]


async def until_a_transaction_waits_for_a_user_lock(sessionmaker) -> None:
    sql = "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
    async with asyncio.timeout(30):
        while not await fetch(sessionmaker, sql):
            await asyncio.sleep(0.05)


async def test_registration_running_while_an_email_is_parked_releases_it(sessionmaker) -> None:
    user = uuid.uuid4()
    completed = experiment_completed(user)
    async with sessionmaker() as parking, parking.begin():
        await HANDLERS[completed.type](parking, completed, completed.payload())
        registering = asyncio.create_task(handle(sessionmaker, user_registered(user)))
        await until_a_transaction_waits_for_a_user_lock(sessionmaker)
    await registering

    [row] = await email_rows(sessionmaker)
    assert (row.status, row.to_address) == ("queued", "ann@example.com")


async def test_email_for_a_user_registering_meanwhile_is_queued_not_parked(sessionmaker) -> None:
    user = uuid.uuid4()
    registered = user_registered(user)
    async with sessionmaker() as registering, registering.begin():
        await HANDLERS[registered.type](registering, registered, registered.payload())
        parking = asyncio.create_task(handle(sessionmaker, experiment_completed(user)))
        await until_a_transaction_waits_for_a_user_lock(sessionmaker)
    await parking

    [row] = await email_rows(sessionmaker)
    assert (row.status, row.to_address) == ("queued", "ann@example.com")
