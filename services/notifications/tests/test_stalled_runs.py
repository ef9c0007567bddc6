"""``experiment.stalled`` is a failure alert: the owner is emailed at once (over real SMTP) and
gets an in-app notification; the run reporting again (``experiment.resumed``) notifies nobody."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from runyard.notifications import preferences
from runyard.notifications.consumers import make_handlers
from runyard.notifications.workers import send_due_emails
from runyard.shared.contracts.experiments import ExperimentResumed, ExperimentStalled
from runyard.shared.events import CloudEvent
from runyard.shared.testing.events import user_registered
from services.notifications.tests.notifications_helpers import (
    Settings,
    email_rows,
    event_of,
    fetch,
    handle,
)

EXPERIMENT_ID = uuid.UUID("e2b8c6d4-1f3a-4b5c-9d7e-8a0f2c4e6b13")


def experiment_stalled(owner_id: uuid.UUID) -> CloudEvent:
    return event_of(
        ExperimentStalled(
            experiment_id=EXPERIMENT_ID,
            name="cnn <night> run",
            owner_id=owner_id,
            model_type="cnn1d",
            status="running",
            total_epochs=21,
            latest_metrics={"val_loss": 0.1552, "val_accuracy": 0.9461},
            started_at=datetime(2026, 1, 5, 9, 0, tzinfo=UTC),
            last_seen_at=datetime(2026, 1, 5, 10, 24, 55, tzinfo=UTC),
            stalled_at=datetime(2026, 1, 5, 10, 35, 7, tzinfo=UTC),
            stale_after_s=600.0,
        ),
        subject=EXPERIMENT_ID,
    )


async def in_app(sessionmaker, owner: uuid.UUID) -> list[tuple[str, str, str]]:
    rows = await fetch(
        sessionmaker,
        "SELECT event_type, title, body FROM notifications.in_app_notifications "
        "WHERE user_id = :owner ORDER BY created_at",
        owner=owner,
    )
    return [tuple(r) for r in rows]


async def test_the_owner_is_emailed_that_the_run_stopped_reporting(
    sessionmaker, settings, mailer, smtp_sink
) -> None:
    owner = uuid.uuid4()
    await handle(sessionmaker, user_registered(owner, timezone="Europe/Berlin"))

    await handle(sessionmaker, experiment_stalled(owner))
    assert await send_due_emails(sessionmaker, settings=settings, mailer=mailer) == 1

    [mail] = smtp_sink.messages()
    assert mail["Subject"] == 'Your training run "cnn <night> run" stopped reporting'
    assert mail["To"] == "ann@example.com"
    text = mail.get_body(("plain",)).get_content()
    html = mail.get_body(("html",)).get_content()
    assert text.startswith("Hello Ann Lee,")
    assert 'your training run "cnn <night> run" stopped reporting' in text
    assert "no heartbeat and no epoch for more than 10 minutes" in text
    assert "Last report:       2026-01-05 11:24:55 CET" in text
    assert "Marked stalled:    2026-01-05 11:35:07 CET" in text
    assert "Epochs logged:     21" in text and "Last val_accuracy: 0.9461" in text
    assert "<strong>cnn &lt;night&gt; run</strong>" in html and "<night>" not in html
    # an ordinary notification: the user may unsubscribe from it
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert await in_app(sessionmaker, owner) == [
        (
            "experiment.stalled",
            "Training run stopped reporting",
            'Experiment "cnn <night> run" stopped reporting',
        )
    ]


async def test_a_redelivered_stall_emails_once(sessionmaker, settings, mailer, smtp_sink) -> None:
    owner = uuid.uuid4()
    await handle(sessionmaker, user_registered(owner))
    event = experiment_stalled(owner)
    await handle(sessionmaker, event)
    await handle(sessionmaker, event)
    assert await send_due_emails(sessionmaker, settings=settings, mailer=mailer) == 1
    assert len(smtp_sink.messages()) == 1
    assert len(await in_app(sessionmaker, owner)) == 1


async def test_the_owner_can_turn_the_email_off_and_keep_the_in_app_note(
    sessionmaker, settings, mailer, smtp_sink
) -> None:
    owner = uuid.uuid4()
    await handle(sessionmaker, user_registered(owner))
    async with sessionmaker() as session, session.begin():
        await preferences.update_preference(
            session,
            user_id=owner,
            event_type="experiment.stalled",
            changes={"email_enabled": False},
        )
    await handle(sessionmaker, experiment_stalled(owner))
    assert await send_due_emails(sessionmaker, settings=settings, mailer=mailer) == 0
    assert await email_rows(sessionmaker) == []
    assert [row[0] for row in await in_app(sessionmaker, owner)] == ["experiment.stalled"]


def test_reporting_again_notifies_nobody() -> None:
    handlers = make_handlers(Settings(environment="test"))
    assert ExperimentStalled.event_type in handlers
    assert ExperimentResumed.event_type not in handlers


def test_the_limit_reads_as_prose() -> None:
    from runyard.notifications.run_notices import silence

    shown = [silence(s) for s in (1, 5, 119, 600, 5400, 7200, 2592000)]
    assert shown == [
        "1 second",
        "5 seconds",
        "119 seconds",
        "10 minutes",
        "90 minutes",
        "2 hours",
        "720 hours",
    ]
