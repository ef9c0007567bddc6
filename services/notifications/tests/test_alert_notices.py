"""``alert.triggered`` / ``alert.resolved`` (alert rules on training metrics) like any other
event: emailed at once (over real SMTP) with the rule's summary as the subject, an in-app entry,
per-type preferences (a daily digest instead), and a cleared alert only in the inbox."""

from __future__ import annotations

import uuid

from runyard.notifications import preferences
from runyard.notifications.workers import send_due_emails
from runyard.shared.contracts.alerts import AlertResolved, AlertTriggered
from runyard.shared.events import CloudEvent
from runyard.shared.testing.events import user_registered
from services.notifications.tests.notifications_helpers import (
    digest_rows,
    email_rows,
    event_of,
    handle,
    in_app_rows,
)

EXPERIMENT_ID = uuid.UUID("0b7c1e5a-2d4f-4a6b-8c9d-1e2f3a4b5c6d")
SUMMARY = "val_loss diverged in pump-cnn: +38 % over 5 epochs (epoch 41)"


def alert(owner: uuid.UUID, contract: type[AlertTriggered] | type[AlertResolved]) -> CloudEvent:
    return event_of(
        contract(
            alert_id=uuid.uuid4(),
            rule_id=uuid.uuid4(),
            rule_name="loss <runaway>",
            kind="divergence",
            severity="critical",
            owner_id=owner,
            experiment_id=EXPERIMENT_ID,
            name="pump-cnn",
            epoch=41,
            values={"val_loss": 0.4512, "reference": 0.327, "change_percent": 37.98, "epochs": 5},
            summary=SUMMARY,
        ),
        subject=EXPERIMENT_ID,
    )


async def test_a_triggered_alert_is_emailed_at_once_and_in_the_inbox(
    sessionmaker, settings, mailer, smtp_sink
) -> None:
    owner = uuid.uuid4()
    await handle(sessionmaker, user_registered(owner, timezone="Europe/Berlin"))
    event = alert(owner, AlertTriggered)
    await handle(sessionmaker, event)
    await handle(sessionmaker, event)  # redelivered: nothing twice
    assert await send_due_emails(sessionmaker, settings=settings, mailer=mailer) == 1

    [mail] = smtp_sink.messages()
    assert mail["Subject"] == f"[critical] {SUMMARY}"
    text = mail.get_body(("plain",)).get_content()
    html = mail.get_body(("html",)).get_content()
    assert 'your alert rule "loss <runaway>" (critical) fired for "pump-cnn"' in text
    assert SUMMARY in text
    assert "Rule:              loss <runaway> (divergence)" in text
    assert "Epoch:             41" in text and "change_percent:    37.98" in text
    assert "loss &lt;runaway&gt;" in html and "<runaway>" not in html
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert [(r.event_type, r.title, r.body) for r in await in_app_rows(sessionmaker)] == [
        ("alert.triggered", "Alert on training metrics", SUMMARY)
    ]


async def test_alerts_follow_their_preference_into_a_daily_digest(
    sessionmaker, settings, mailer, smtp_sink
) -> None:
    owner = uuid.uuid4()
    await handle(sessionmaker, user_registered(owner))
    async with sessionmaker() as session, session.begin():
        await preferences.update_preference(
            session,
            user_id=owner,
            event_type="alert.triggered",
            changes={"email_frequency": "daily"},
        )
    await handle(sessionmaker, alert(owner, AlertTriggered))
    assert await email_rows(sessionmaker) == []
    assert [(r.event_type, r.frequency) for r in await digest_rows(sessionmaker)] == [
        ("alert.triggered", "daily")
    ]


async def test_a_cleared_alert_goes_to_the_inbox_only(
    sessionmaker, settings, mailer, smtp_sink
) -> None:
    owner = uuid.uuid4()
    await handle(sessionmaker, user_registered(owner))
    await handle(sessionmaker, alert(owner, AlertResolved))
    assert await send_due_emails(sessionmaker, settings=settings, mailer=mailer) == 0
    assert smtp_sink.messages() == []
    assert [(r.event_type, r.title, r.body) for r in await in_app_rows(sessionmaker)] == [
        ("alert.resolved", "Alert cleared", f"Resolved: {SUMMARY}")
    ]
