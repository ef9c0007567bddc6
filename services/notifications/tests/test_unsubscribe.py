"""One-click unsubscribe (RFC 8058) from the link in an email: no login, a signed token."""

from __future__ import annotations

import uuid
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

from runyard.notifications.links import Links
from runyard.notifications.workers import send_due_emails
from runyard.shared.db import utcnow
from runyard.shared.testing import identity_headers
from runyard.shared.testing.events import experiment_completed, user_registered
from services.notifications.tests.notifications_helpers import email_rows, handle, outbox_events

URL = "/api/v1/notifications/unsubscribe"
PREFERENCES = "/api/v1/notifications/preferences"


async def token_from_a_real_email(sessionmaker, settings, mailer, smtp_sink, user) -> str:
    await handle(sessionmaker, user_registered(user))
    await handle(sessionmaker, experiment_completed(user))
    await send_due_emails(sessionmaker, settings=settings, mailer=mailer)
    [mail] = smtp_sink.messages()
    link = mail["List-Unsubscribe"].strip("<>")
    [token] = parse_qs(urlsplit(link).query)["token"]
    return token


async def test_get_shows_a_confirmation_page_and_changes_nothing(
    client, sessionmaker, settings, mailer, smtp_sink
) -> None:
    user = uuid.uuid4()
    token = await token_from_a_real_email(sessionmaker, settings, mailer, smtp_sink, user)
    outbox_before = await outbox_events(sessionmaker)

    page = await client.get(URL, params={"token": token})

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "Experiment completed" in page.text
    assert "<form method='post'" in page.text
    assert await outbox_events(sessionmaker) == outbox_before


async def test_one_click_post_without_login_stops_that_event_types_emails(
    client, sessionmaker, settings, mailer, smtp_sink
) -> None:
    user = uuid.uuid4()
    token = await token_from_a_real_email(sessionmaker, settings, mailer, smtp_sink, user)

    response = await client.post(
        URL,
        params={"token": token},
        content="List-Unsubscribe=One-Click",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )

    assert response.status_code == 200
    assert "You are unsubscribed" in response.text
    listed = (await client.get(PREFERENCES, headers=identity_headers(user))).json()["items"]
    [pref] = [p for p in listed if p["event_type"] == "experiment.completed"]
    assert pref["email_frequency"] == "never"
    events = [e for e in await outbox_events(sessionmaker) if e.topic != "email.sent"]
    assert [e.payload["data"]["email_frequency"] for e in events] == ["never"]
    await handle(sessionmaker, experiment_completed(user))
    assert len(await email_rows(sessionmaker)) == 1  # only the first one


async def test_tampered_or_expired_token_is_rejected_and_changes_nothing(
    client, sessionmaker, settings
) -> None:
    links = Links.from_settings(settings)
    user = uuid.uuid4()
    good = links.unsubscribe_token(user, ["experiment.completed"], now=utcnow())
    body, _, mac = good.partition(".")
    other = links.unsubscribe_token(uuid.uuid4(), ["experiment.completed"], now=utcnow())
    tampered = f"{other.partition('.')[0]}.{mac}"
    expired = links.unsubscribe_token(
        user, ["experiment.completed"], now=utcnow() - links.ttl - timedelta(seconds=1)
    )
    wrong_key = Links(links.public_url, b"another key", links.ttl).unsubscribe_token(
        user, ["experiment.completed"], now=utcnow()
    )

    for token in (tampered, expired, wrong_key, "garbage", f"{body}."):
        for method in ("GET", "POST"):
            response = await client.request(method, URL, params={"token": token})
            assert response.status_code == 400, (method, token)
            assert response.headers["content-type"] == "application/problem+json"
            assert "invalid or has expired" in response.json()["detail"]
    missing = await client.post(URL)
    assert missing.status_code == 422
    assert await outbox_events(sessionmaker) == []


async def test_token_naming_a_security_alert_unsubscribes_from_nothing(
    client, sessionmaker, settings
) -> None:
    links = Links.from_settings(settings)
    token = links.unsubscribe_token(uuid.uuid4(), ["login.failed"], now=utcnow())
    response = await client.post(URL, params={"token": token})
    assert response.status_code == 200
    assert await outbox_events(sessionmaker) == []
