"""The contexts of account security emails: reset and verification links, a changed password
or address, a sign-up with a taken address. The links themselves are added by
``notices.render_notice`` (they need the email link secret)."""

from __future__ import annotations

from typing import Any

from runyard.notifications.formatting import facts, format_local
from runyard.notifications.models import User
from runyard.shared.contracts.auth import (
    EmailVerificationRequested,
    EmailVerified,
    PasswordChanged,
    PasswordResetRequested,
    RegistrationAttempted,
)
from runyard.shared.events import CloudEvent


def _requested(event: CloudEvent, ip_address: str | None, user: User) -> list[tuple[str, str]]:
    return facts(("When", format_local(event.time, user.timezone)), ("IP address", ip_address))


def password_reset_context(
    event: CloudEvent, payload: PasswordResetRequested, user: User
) -> dict[str, Any]:
    return {
        "expires_at": format_local(payload.expires_at, user.timezone),
        "facts": _requested(event, payload.ip_address, user),
    }


def verification_context(
    event: CloudEvent, payload: EmailVerificationRequested, user: User
) -> dict[str, Any]:
    return {
        "change": payload.purpose == "change",
        "address": payload.email,
        "expires_at": format_local(payload.expires_at, user.timezone),
    }


def password_changed_context(
    event: CloudEvent, payload: PasswordChanged, user: User
) -> dict[str, Any]:
    return {
        "reset": payload.reason == "reset",
        "facts": _requested(event, payload.ip_address, user),
    }


def email_changed_context(event: CloudEvent, payload: EmailVerified, user: User) -> dict[str, Any]:
    return {
        "facts": facts(
            ("New address", payload.email),
            ("Previous address", payload.previous_email),
            ("When", format_local(event.time, user.timezone)),
        )
    }


def registration_attempted_context(
    event: CloudEvent, payload: RegistrationAttempted, user: User
) -> dict[str, Any]:
    return {"facts": _requested(event, payload.ip_address, user)}
