"""Hourly/daily/weekly digests: due times in the user's timezone across DST changes (injected
clock), one digest email per user per due time, and two schedulers never sending one twice."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import UTC, datetime

import pytest

from runyard.notifications import preferences
from runyard.notifications.digests import next_digest_at
from runyard.notifications.workers import schedule_due_digests, send_due_emails
from runyard.shared.db import create_engine, create_sessionmaker
from runyard.shared.testing.events import user_deactivated, user_registered
from services.notifications.tests.notifications_helpers import (
    Clock,
    dataset_generation_completed,
    dataset_import_completed,
    digest_rows,
    email_rows,
    fetch,
    handle,
    handlers_at,
    hpo_campaign_completed,
)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


@pytest.mark.parametrize(
    ("now", "frequency", "timezone", "expected"),
    [
        # Berlin springs forward on Sunday 2026-03-29: 08:00 local is 07:00 UTC before, 06:00 after.
        (utc(2026, 3, 27, 10), "daily", "Europe/Berlin", utc(2026, 3, 28, 7)),
        (utc(2026, 3, 28, 10), "daily", "Europe/Berlin", utc(2026, 3, 29, 6)),
        # ... and falls back on Sunday 2026-10-25: Monday digests move from 06:00 to 07:00 UTC.
        (utc(2026, 10, 15, 12), "weekly", "Europe/Berlin", utc(2026, 10, 19, 6)),
        (utc(2026, 10, 22, 12), "weekly", "Europe/Berlin", utc(2026, 10, 26, 7)),
        # Monday before 08:00 local: this Monday's digest; after it: next week's.
        (utc(2026, 10, 19, 5, 59), "weekly", "Europe/Berlin", utc(2026, 10, 19, 6)),
        (utc(2026, 10, 19, 6), "weekly", "Europe/Berlin", utc(2026, 10, 26, 7)),
        # New York springs forward on 2026-03-08.
        (utc(2026, 3, 7, 20), "daily", "America/New_York", utc(2026, 3, 8, 12)),
        (utc(2026, 3, 8, 20), "daily", "America/New_York", utc(2026, 3, 9, 12)),
        # Hourly: the next full local hour, 01:30 CET -> 03:00 CEST (02:00 does not exist).
        (utc(2026, 3, 29, 0, 30), "hourly", "Europe/Berlin", utc(2026, 3, 29, 1)),
        # Half-hour zone: full local hours are at :30 UTC.
        (utc(2026, 5, 1, 10, 10), "hourly", "Asia/Kolkata", utc(2026, 5, 1, 10, 30)),
        (utc(2026, 5, 1, 10, 10), "daily", "UTC", utc(2026, 5, 2, 8)),
        (utc(2026, 5, 1, 10, 10), "daily", "Not/AZone", utc(2026, 5, 2, 8)),
    ],
)
def test_digest_time_is_a_local_wall_clock_time_across_dst(
    now, frequency, timezone, expected
) -> None:
    assert next_digest_at(now, frequency, timezone) == expected


def test_a_shorter_hourly_period_ends_at_the_next_boundary_of_that_period() -> None:
    now = datetime(2026, 5, 1, 10, 10, 7, 500_000, tzinfo=UTC)
    assert next_digest_at(now, "hourly", "UTC", hourly_period_s=10) == utc(2026, 5, 1, 10, 10, 10)
    assert next_digest_at(now, "hourly", "UTC", hourly_period_s=900) == utc(2026, 5, 1, 10, 15)


def test_an_hourly_period_that_does_not_divide_an_hour_is_refused() -> None:
    from pydantic import ValidationError

    from runyard.notifications.config import Settings

    with pytest.raises(ValidationError, match="must divide 3600"):
        Settings(environment="test", digest_hourly_period_s=7)
    assert Settings(environment="test", digest_hourly_period_s=10).digest_hourly_period_s == 10


async def test_daily_digest_goes_out_at_eight_local_on_the_day_dst_starts(
    sessionmaker, settings, mailer, smtp_sink
) -> None:
    clock = Clock(utc(2026, 3, 28, 10))  # Saturday 11:00 in Berlin
    handlers = handlers_at(clock)
    owner = uuid.uuid4()
    await handle(sessionmaker, user_registered(owner, timezone="Europe/Berlin"), handlers)
    async with sessionmaker() as session, session.begin():
        await preferences.update_preference(
            session,
            user_id=owner,
            event_type="hpo_campaign.completed",
            changes={"email_frequency": "daily"},
        )
    for make in (dataset_import_completed, dataset_generation_completed, hpo_campaign_completed):
        await handle(sessionmaker, make(owner), handlers)
    await handle(sessionmaker, dataset_import_completed(owner), handlers)

    items = await digest_rows(sessionmaker)
    assert {i.scheduled_for for i in items} == {utc(2026, 3, 29, 6)}  # 08:00 CEST
    assert await email_rows(sessionmaker) == []

    clock.now = utc(2026, 3, 29, 5, 59)
    assert (await schedule_due_digests(sessionmaker, settings=settings, clock=clock)).digests == 0
    clock.now = utc(2026, 3, 29, 6)
    run = await schedule_due_digests(sessionmaker, settings=settings, clock=clock)
    assert (run.digests, run.items) == (1, 4)
    assert (await schedule_due_digests(sessionmaker, settings=settings, clock=clock)).digests == 0

    [digest] = await email_rows(sessionmaker)
    assert digest.status == "queued"
    items = await digest_rows(sessionmaker)
    assert {(i.included_in_digest, i.digest_email_id) for i in items} == {(True, digest.id)}
    assert await send_due_emails(sessionmaker, settings=settings, mailer=mailer) == 1

    [mail] = smtp_sink.messages()
    assert mail["To"] == "ann@example.com"
    assert mail["Subject"] == "Your Runyard daily digest: 4 updates"
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    text = mail.get_body(("plain",)).get_content()
    assert "Dataset import completed (2)" in text
    assert "Dataset generation completed (1)" in text
    assert 'HPO campaign "lr sweep" completed (20 trials)' in text
    assert text.index("Dataset generation completed") < text.index("Dataset import completed")
    html = mail.get_body(("html",)).get_content()
    assert "<h3>Dataset import completed (2)</h3>" in html


async def test_redelivered_event_is_queued_for_the_digest_once(sessionmaker) -> None:
    owner = uuid.uuid4()
    await handle(sessionmaker, user_registered(owner))
    event = dataset_import_completed(owner)
    await handle(sessionmaker, event)
    await handle(sessionmaker, event)
    assert len(await digest_rows(sessionmaker)) == 1


async def test_digest_of_a_user_deactivated_meanwhile_is_recorded_as_skipped(
    sessionmaker, settings, smtp_sink
) -> None:
    clock = Clock(utc(2026, 5, 1, 10))
    owner = uuid.uuid4()
    await handle(sessionmaker, user_registered(owner), handlers_at(clock))
    await handle(sessionmaker, dataset_import_completed(owner), handlers_at(clock))
    await handle(sessionmaker, user_deactivated(owner, sequence=2))

    clock.now = utc(2026, 5, 2, 8)
    assert (await schedule_due_digests(sessionmaker, settings=settings, clock=clock)).digests == 1
    [digest] = await email_rows(sessionmaker)
    assert (digest.status, digest.error_message) == ("skipped", "user_inactive")
    [item] = await digest_rows(sessionmaker)
    assert item.included_in_digest


@pytest.mark.slow
async def test_two_schedulers_on_one_database_send_exactly_one_digest_per_user(
    db, sessionmaker, settings, mailer, smtp_sink
) -> None:
    clock = Clock(utc(2026, 5, 1, 10))
    handlers = handlers_at(clock)
    users = [uuid.uuid4() for _ in range(30)]
    for user in users:
        await handle(
            sessionmaker, user_registered(user, email=f"{user.hex[:12]}@example.com"), handlers
        )
        await handle(sessionmaker, dataset_import_completed(user), handlers)
        await handle(sessionmaker, dataset_generation_completed(user), handlers)
    clock.now = utc(2026, 5, 2, 8)
    small_batches = settings.model_copy(update={"digest_batch_users": 4})

    async def scheduler() -> int:
        engine = create_engine(db.url, pool_size=1)
        own_sessionmaker = create_sessionmaker(engine, schema="notifications")
        built = 0
        try:
            while True:
                run = await schedule_due_digests(
                    own_sessionmaker, settings=small_batches, clock=clock
                )
                built += run.digests
                pending = await fetch(
                    own_sessionmaker,
                    "SELECT 1 FROM notifications.email_digest_queue WHERE NOT included_in_digest",
                )
                if not pending:
                    return built
                await asyncio.sleep(0)
        finally:
            await engine.dispose()

    first, second = await asyncio.gather(scheduler(), scheduler())
    assert first + second == 30
    while await send_due_emails(sessionmaker, settings=settings, mailer=mailer):
        pass

    received = Counter(m["To"] for m in smtp_sink.messages())
    assert received == Counter({f"{u.hex[:12]}@example.com": 1 for u in users})
    assert {m["Subject"] for m in smtp_sink.messages()} == {"Your Runyard daily digest: 2 updates"}
