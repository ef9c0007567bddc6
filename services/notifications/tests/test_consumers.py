from __future__ import annotations

import uuid

from runyard.notifications.workers import send_due_emails
from runyard.shared.contracts.webhooks import WebhookEndpointDisabled
from runyard.shared.inbox import EventConsumer
from runyard.shared.testing.events import (
    as_record,
    contract_event,
    experiment_completed,
    user_deactivated,
    user_registered,
    user_updated,
)
from services.notifications.tests.notifications_helpers import (
    HANDLERS,
    email_rows,
    fetch,
    handle,
    login_failed,
    outbox_events,
)


async def test_completed_experiment_emails_its_owner_over_smtp(
    sessionmaker, settings, mailer, smtp_sink
) -> None:
    owner = uuid.uuid4()
    await handle(sessionmaker, user_registered(owner, email="ann@example.com"))
    completed = experiment_completed(owner, name="cnn baseline")
    await handle(sessionmaker, completed)

    [queued] = await email_rows(sessionmaker)
    assert queued.status == "queued"
    assert queued.to_address == "ann@example.com"

    assert await send_due_emails(sessionmaker, settings=settings, mailer=mailer) == 1

    [mail] = smtp_sink.messages()
    assert mail["To"] == "ann@example.com"
    assert mail["From"] == "Runyard <noreply@runyard.local>"
    assert mail["Subject"] == 'Experiment "cnn baseline" completed'
    assert "val_accuracy: 0.9313" in mail.get_body(("plain",)).get_content()
    assert "<strong>cnn baseline</strong>" in mail.get_body(("html",)).get_content()
    [sent] = await email_rows(sessionmaker)
    assert sent.status == "sent"
    assert sent.sent_at is not None
    assert sent.message_id == mail["Message-ID"]
    [event] = await outbox_events(sessionmaker)
    assert event.topic == "email.sent"
    assert event.key == str(sent.id)
    assert event.payload["data"]["to"] == "ann@example.com"
    assert event.payload["data"]["trigger_event_id"] == completed.id
    assert event.payload["data"]["message_id"] == mail["Message-ID"]


async def test_html_part_escapes_user_supplied_names(
    sessionmaker, settings, mailer, smtp_sink
) -> None:
    owner = uuid.uuid4()
    await handle(sessionmaker, user_registered(owner))
    await handle(sessionmaker, experiment_completed(owner, name="<script>x</script>\r\nBcc: e@x"))
    await send_due_emails(sessionmaker, settings=settings, mailer=mailer)

    [mail] = smtp_sink.messages()
    assert mail["Subject"] == 'Experiment "<script>x</script> Bcc: e@x" completed'
    assert mail["Bcc"] is None
    html = mail.get_body(("html",)).get_content()
    assert "&lt;script&gt;x&lt;/script&gt;" in html
    assert "<script>" not in html


async def test_same_event_handled_twice_queues_one_email(sessionmaker) -> None:
    owner = uuid.uuid4()
    await handle(sessionmaker, user_registered(owner))
    completed = experiment_completed(owner)
    await handle(sessionmaker, completed)
    await handle(sessionmaker, completed)
    assert len(await email_rows(sessionmaker)) == 1


async def test_redelivered_record_through_event_consumer_queues_one_email(sessionmaker) -> None:
    consumer = EventConsumer(
        sessionmaker=sessionmaker,
        producer=None,  # type: ignore[arg-type]  # only dead-lettering would use it
        bootstrap_servers=[],
        group_id="notifications",
        schema="notifications",
        service="notifications",
        handlers=HANDLERS,
    )
    owner = uuid.uuid4()
    assert await consumer.process(as_record(user_registered(owner), 0)) == "processed"
    completed = experiment_completed(owner)

    assert await consumer.process(as_record(completed, 0)) == "processed"
    assert await consumer.process(as_record(completed, 0)) == "duplicate"

    assert len(await email_rows(sessionmaker)) == 1
    inbox = await fetch(
        sessionmaker,
        "SELECT consumer, topic FROM notifications.inbox WHERE event_id = :id",
        id=completed.id,
    )
    assert [(r.consumer, r.topic) for r in inbox] == [("notifications", "experiment.completed")]


async def test_stale_user_update_is_ignored_and_newer_one_applies(sessionmaker) -> None:
    user = uuid.uuid4()
    await handle(sessionmaker, user_registered(user, email="v2@example.com", sequence=2))
    await handle(sessionmaker, user_updated(user, email="v1@example.com", sequence=1))
    await handle(sessionmaker, user_updated(user, email="v2-again@example.com", sequence=2))
    assert await stored_email(sessionmaker, user) == ("v2@example.com", 2)

    await handle(sessionmaker, user_updated(user, email="v3@example.com", sequence=3))
    assert await stored_email(sessionmaker, user) == ("v3@example.com", 3)


async def stored_email(sessionmaker, user_id: uuid.UUID) -> tuple[str, int]:
    [row] = await fetch(
        sessionmaker,
        "SELECT email, sequence FROM notifications.users WHERE user_id = :id",
        id=user_id,
    )
    return row.email, row.sequence


async def test_deactivated_user_gets_no_email(sessionmaker) -> None:
    user = uuid.uuid4()
    await handle(sessionmaker, user_registered(user, sequence=1))
    await handle(sessionmaker, user_deactivated(user, sequence=2))
    await handle(sessionmaker, experiment_completed(user))
    await handle(sessionmaker, login_failed(user))
    assert await email_rows(sessionmaker) == []


async def test_deactivation_overtaking_registration_keeps_user_inactive(sessionmaker) -> None:
    user = uuid.uuid4()
    await handle(sessionmaker, user_deactivated(user, sequence=2))
    await handle(sessionmaker, user_registered(user, sequence=1))
    await handle(sessionmaker, experiment_completed(user))
    assert await email_rows(sessionmaker) == []


async def test_failed_login_for_an_unknown_username_is_skipped(sessionmaker) -> None:
    await handle(sessionmaker, login_failed(None))
    assert await email_rows(sessionmaker) == []


async def test_failed_login_emails_the_account_owner(
    sessionmaker, settings, mailer, smtp_sink
) -> None:
    user = uuid.uuid4()
    await handle(sessionmaker, user_registered(user, email="ann@example.com"))
    await handle(sessionmaker, login_failed(user))
    await send_due_emails(sessionmaker, settings=settings, mailer=mailer)

    [mail] = smtp_sink.messages()
    assert mail["To"] == "ann@example.com"
    assert mail["Subject"] == "Failed sign-in attempt on your Runyard account"
    body = mail.get_body(("plain",)).get_content()
    assert "203.0.113.9" in body
    assert "Failed attempts in a row: 3" in body


async def test_disabled_webhook_emails_its_owner_with_the_reason(
    sessionmaker, settings, mailer, smtp_sink
) -> None:
    owner = uuid.uuid4()
    await handle(sessionmaker, user_registered(owner, email="ann@example.com"))
    webhook_id = uuid.uuid4()
    disabled = contract_event(
        WebhookEndpointDisabled(
            webhook_id=webhook_id,
            owner_id=owner,
            name="lab slack",
            url="https://hooks.slack.com/services/***",
            reason="endpoint answered 410 Gone",
            consecutive_failures=1,
        ),
        subject=webhook_id,
    )
    await handle(sessionmaker, disabled)
    assert await send_due_emails(sessionmaker, settings=settings, mailer=mailer) == 1

    [mail] = smtp_sink.messages()
    assert mail["To"] == "ann@example.com"
    assert mail["Subject"] == 'Webhook "lab slack" was disabled'
    text = mail.get_body(("plain",)).get_content()
    assert "endpoint answered 410 Gone" in text
    assert f"/api/v1/webhooks/{webhook_id}/enable" in text
