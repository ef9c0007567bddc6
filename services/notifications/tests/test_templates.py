"""Every notifying event type as a real email over SMTP: subject, headers, text and HTML parts."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import pytest

from runyard.notifications import preferences
from runyard.notifications.links import Links
from runyard.notifications.workers import send_due_emails
from runyard.shared.db import utcnow
from runyard.shared.events import CloudEvent
from runyard.shared.testing.events import experiment_completed, user_registered
from services.notifications.tests.notifications_helpers import (
    account_locked,
    dataset_generation_completed,
    dataset_generation_failed,
    dataset_import_completed,
    dataset_import_failed,
    experiment_failed,
    handle,
    hpo_campaign_completed,
    login_failed,
    nas_campaign_completed,
    webhook_endpoint_disabled,
)

# (event factory, subject, in the text part, in the HTML part, security alert?)
CASES: list[tuple[Callable[[uuid.UUID], CloudEvent], str, list[str], list[str], bool]] = [
    (
        experiment_completed,
        'Experiment "cnn baseline" completed',
        ["val_accuracy: 0.9313", "Epochs:        10 (best: 7)", "Duration:      42m 05s"],
        ["<strong>cnn baseline</strong>"],
        False,
    ),
    (
        experiment_failed,
        'Experiment "lstm <wide>" failed',
        ['your experiment "lstm <wide>" failed.', "Error: CUDA out of memory", "Last val_loss"],
        ["<strong>lstm &lt;wide&gt;</strong>", "CUDA out of memory"],
        False,
    ),
    (
        hpo_campaign_completed,
        'HPO campaign "lr sweep" completed',
        ["Trials:            20 of 20", "Best val_accuracy: 0.9412 (maximize)", "batch_size: 64"],
        ["<strong>lr sweep</strong>", '<th align="left">learning_rate</th><td>0.0003</td>'],
        False,
    ),
    (
        nas_campaign_completed,
        'NAS campaign "cnn search" completed',
        ["Best accuracy:     0.912", "kernel_size: 5", "Search algorithm:  random"],
        ["<strong>cnn search</strong>"],
        False,
    ),
    (
        dataset_generation_completed,
        'Dataset generation "synthetic pumps" completed',
        ["Signals:           1200", "Fault types:       cavitation, imbalance"],
        ["<strong>synthetic pumps</strong>"],
        False,
    ),
    (
        dataset_generation_failed,
        'Dataset generation "synthetic pumps" failed',
        ["Error: disk full"],
        ["disk full"],
        False,
    ),
    (
        dataset_import_completed,
        'Dataset import "plant A upload" completed',
        ["Files:             3", "Signals:           450"],
        ["<strong>plant A upload</strong>"],
        False,
    ),
    (
        dataset_import_failed,
        'Dataset import "plant A upload" failed',
        ["Error: validation failed", "- file: a.csv, row: 7, error: missing fault_class"],
        ["<li>file: a.csv, row: 7, error: missing fault_class</li>"],
        False,
    ),
    (
        webhook_endpoint_disabled,
        'Webhook "lab slack" was disabled',
        ["endpoint answered 410 Gone"],
        ["<strong>lab slack</strong>"],
        False,
    ),
    (
        login_failed,
        "Failed sign-in attempt on your Runyard account",
        ["203.0.113.9", "Failed attempts in a row: 3"],
        ["<td>curl/8.5</td>"],
        True,
    ),
    (
        account_locked,
        "Your Runyard account was locked after failed sign-in attempts",
        ["after 5 failed sign-in attempts", "Locked until:      2026-01-05 11:15:00 CET"],
        ["198.51.100.7"],
        True,
    ),
]


@pytest.mark.parametrize(
    ("make", "subject", "in_text", "in_html", "critical"),
    CASES,
    ids=[case[0].__name__ for case in CASES],
)
async def test_each_event_type_is_emailed_with_its_template_and_headers(
    sessionmaker, settings, mailer, smtp_sink, make, subject, in_text, in_html, critical
) -> None:
    owner = uuid.uuid4()
    await handle(sessionmaker, user_registered(owner, timezone="Europe/Berlin"))
    event = make(owner)
    async with sessionmaker() as session, session.begin():
        # Some types default to a digest: ask for them at once.
        await preferences.update_preference(
            session,
            user_id=owner,
            event_type=event.type,
            changes={"email_frequency": "immediate"},
        )
    await handle(sessionmaker, event)
    assert await send_due_emails(sessionmaker, settings=settings, mailer=mailer) == 1

    [mail] = smtp_sink.messages()
    assert mail["Subject"] == subject
    assert mail["To"] == "ann@example.com"
    assert mail["Message-ID"].startswith("<") and mail["Message-ID"].endswith("@runyard.local>")
    text = mail.get_body(("plain",)).get_content()
    html = mail.get_body(("html",)).get_content()
    assert text.startswith("Hello Ann Lee,")
    for snippet in in_text:
        assert snippet in text
    for snippet in in_html:
        assert snippet in html
    assert "<script" not in html
    if critical:
        assert mail["List-Unsubscribe"] is None
        assert mail["List-Unsubscribe-Post"] is None
        assert "unsubscribe" not in text.lower()
        return
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = mail["List-Unsubscribe"].removeprefix("<").removesuffix(">")
    assert url.startswith("http://127.0.0.1:8000/api/v1/notifications/unsubscribe?token=")
    assert url in text
    [token] = parse_qs(urlsplit(url).query)["token"]
    claims = Links.from_settings(settings).read_unsubscribe_token(token, now=utcnow())
    assert (claims.user_id, claims.event_types) == (owner, (event.type,))
