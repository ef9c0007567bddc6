"""Account security emails over real SMTP: reset and verification links (to the address the event
names, with a token only this service and auth can derive), a changed password or address, a
sign-up with a taken address. They are security alerts: no unsubscribe, no opting out, and the
ones with a link are never folded into a summary."""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import pytest

from runyard.notifications import preferences
from runyard.notifications.errors import SecurityAlertAlwaysEmailed
from runyard.notifications.workers import send_due_emails
from runyard.shared.contracts.auth import (
    EmailVerificationRequested,
    EmailVerified,
    PasswordChanged,
    PasswordResetRequested,
    RegistrationAttempted,
)
from runyard.shared.events import CloudEvent
from runyard.shared.settings import dev_secret
from runyard.shared.testing.events import contract_event, user_registered
from services.notifications.tests.notifications_helpers import fetch, handle, handlers_at

#: AUTH_EMAIL_LINK_SECRET's default: what auth hashes and stores is derived with it
AUTH_LINK_SECRET = dev_secret("email-link-token").get_secret_value()
EXPIRES = datetime(2026, 1, 5, 10, 30, tzinfo=UTC)


def reset_requested(owner: uuid.UUID, link_id: str = "public-handle-1") -> CloudEvent:
    return contract_event(
        PasswordResetRequested(
            user_id=owner,
            username="ann",
            email="ann@example.com",
            link_id=link_id,
            expires_at=EXPIRES,
            ip_address="203.0.113.50",
        ),
        subject=owner,
    )


def verification_requested(owner: uuid.UUID, purpose: str = "change") -> CloudEvent:
    return contract_event(
        EmailVerificationRequested(
            user_id=owner,
            username="ann",
            email="ann.new@example.net",
            link_id="public-handle-2",
            expires_at=EXPIRES,
            purpose=purpose,
        ),
        subject=owner,
    )


def expected_token(event_type: str, link_id: str) -> str:
    """What auth stores the SHA-256 of, computed from the documented derivation."""
    message = f"runyard-email-link\n{event_type}\n{link_id}".encode()
    mac = hmac.new(AUTH_LINK_SECRET.encode(), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


async def deliver(sessionmaker, settings, mailer, smtp_sink, owner, event) -> list:
    await handle(sessionmaker, user_registered(owner, timezone="Europe/Berlin"))
    await handle(sessionmaker, event)
    await send_due_emails(sessionmaker, settings=settings, mailer=mailer)
    return smtp_sink.messages()


def parts(mail) -> tuple[str, str]:
    return mail.get_body(("plain",)).get_content(), mail.get_body(("html",)).get_content()


async def test_a_reset_link_goes_to_the_events_address_with_the_derived_token_in_the_fragment(
    sessionmaker, settings, mailer, smtp_sink
) -> None:
    owner = uuid.uuid4()
    event = reset_requested(owner)
    [mail] = await deliver(sessionmaker, settings, mailer, smtp_sink, owner, event)

    assert mail["To"] == "ann@example.com"
    assert mail["Subject"] == "Reset your Runyard password"
    assert mail["List-Unsubscribe"] is None
    text, html = parts(mail)
    token = expected_token("password_reset.requested", "public-handle-1")
    link = f"http://127.0.0.1:8000/account/reset-password#token={token}"
    assert link in text and link in html
    assert parse_qs(urlsplit(link).fragment)["token"] == [token]
    assert "2026-01-05 11:30:00 CET" in text
    assert "203.0.113.50" in text
    # the token lives in the email only, not in what the service stores of the event
    stored = await fetch(sessionmaker, "SELECT event_data::text FROM notifications.email_logs")
    assert all(token not in row[0] for row in stored)
    inbox = await fetch(sessionmaker, "SELECT data::text FROM notifications.in_app_notifications")
    assert inbox and all(token not in row[0] for row in inbox)


async def test_a_link_made_with_another_secret_is_not_the_one_auth_stored(
    sessionmaker, settings, mailer, smtp_sink
) -> None:
    owner = uuid.uuid4()
    handlers = handlers_at(lambda: datetime.now(UTC), email_link_secret="not-the-auth-secret")
    await handle(sessionmaker, user_registered(owner), handlers)
    await handle(sessionmaker, reset_requested(owner), handlers)
    await send_due_emails(sessionmaker, settings=settings, mailer=mailer)
    [mail] = smtp_sink.messages()
    assert "#token=" in parts(mail)[0]
    assert expected_token("password_reset.requested", "public-handle-1") not in parts(mail)[0]


async def test_an_email_change_link_goes_to_the_new_address_not_the_accounts(
    sessionmaker, settings, mailer, smtp_sink
) -> None:
    owner = uuid.uuid4()
    [mail] = await deliver(
        sessionmaker, settings, mailer, smtp_sink, owner, verification_requested(owner)
    )
    assert mail["To"] == "ann.new@example.net"
    assert mail["Subject"] == "Confirm your new Runyard email address"
    token = expected_token("email_verification.requested", "public-handle-2")
    assert f"http://127.0.0.1:8000/account/verify-email#token={token}" in parts(mail)[0]


async def test_a_signup_link_waits_for_the_user_it_belongs_to(
    sessionmaker, settings, mailer, smtp_sink
) -> None:
    owner = uuid.uuid4()
    await handle(sessionmaker, verification_requested(owner, purpose="signup"))
    assert await send_due_emails(sessionmaker, settings=settings, mailer=mailer) == 0
    await handle(sessionmaker, user_registered(owner))
    await send_due_emails(sessionmaker, settings=settings, mailer=mailer)
    [mail] = smtp_sink.messages()
    assert mail["Subject"] == "Verify your Runyard email address"
    assert "#token=" in parts(mail)[0]


async def test_after_an_address_change_the_previous_address_is_told(
    sessionmaker, settings, mailer, smtp_sink
) -> None:
    owner = uuid.uuid4()
    changed = EmailVerified(
        user_id=owner,
        username="ann",
        email="ann.new@example.net",
        previous_email="ann@example.com",
    )
    [mail] = await deliver(
        sessionmaker, settings, mailer, smtp_sink, owner, contract_event(changed, subject=owner)
    )
    assert mail["To"] == "ann@example.com"
    assert mail["Subject"] == "The email address of your Runyard account was changed"
    assert "ann.new@example.net" in parts(mail)[0]


async def test_a_verified_signup_address_sends_nothing(
    sessionmaker, settings, mailer, smtp_sink
) -> None:
    owner = uuid.uuid4()
    verified = EmailVerified(user_id=owner, username="ann", email="ann@example.com")
    await deliver(
        sessionmaker, settings, mailer, smtp_sink, owner, contract_event(verified, subject=owner)
    )
    assert smtp_sink.messages() == []


@pytest.mark.parametrize(
    ("payload", "subject", "snippet"),
    [
        (
            lambda owner: PasswordChanged(
                user_id=owner, username="ann", reason="reset", ip_address="198.51.100.4"
            ),
            "The password of your Runyard account was changed",
            "every API key of the account has ended",
        ),
        (
            lambda owner: RegistrationAttempted(
                user_id=owner, username="ann", ip_address="198.51.100.4"
            ),
            "Someone tried to sign up to Runyard with your email address",
            "No account was created",
        ),
    ],
    ids=["password_changed", "registration_attempted"],
)
async def test_alerts_go_to_the_accounts_address(
    sessionmaker, settings, mailer, smtp_sink, payload, subject, snippet
) -> None:
    owner = uuid.uuid4()
    event = contract_event(payload(owner), subject=owner)
    [mail] = await deliver(sessionmaker, settings, mailer, smtp_sink, owner, event)
    assert (mail["To"], mail["Subject"]) == ("ann@example.com", subject)
    text = parts(mail)[0]
    assert snippet in text and "198.51.100.4" in text
    assert mail["List-Unsubscribe"] is None


async def test_links_are_never_folded_into_a_summary_nor_switched_off(
    sessionmaker, settings, mailer, smtp_sink
) -> None:
    owner = uuid.uuid4()
    await handle(sessionmaker, user_registered(owner))
    async with sessionmaker() as session, session.begin():
        with pytest.raises(SecurityAlertAlwaysEmailed):
            await preferences.update_preference(
                session,
                user_id=owner,
                event_type="password_reset.requested",
                changes={"email_enabled": False},
            )
    for i in range(3):
        await handle(sessionmaker, reset_requested(owner, link_id=f"handle-{i}"))
    await send_due_emails(sessionmaker, settings=settings, mailer=mailer)
    mails = smtp_sink.messages()
    assert [m["Subject"] for m in mails] == ["Reset your Runyard password"] * 3
    tokens = {expected_token("password_reset.requested", f"handle-{i}") for i in range(3)}
    assert all(any(t in parts(m)[0] for m in mails) for t in tokens)
    summaries = await fetch(
        sessionmaker,
        "SELECT count(*) FROM notifications.email_logs WHERE template_name = 'alert_summary'",
    )
    assert summaries[0][0] == 0
