"""Events published by the auth service (source ``/runyard/auth``)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from datetime import datetime

from runyard.shared.events import EventPayload


class UserRegistered(EventPayload):
    event_type = "user.registered"
    user_id: uuid.UUID
    username: str
    email: str
    role: str = "user"
    is_active: bool = True
    timezone: str = "UTC"
    full_name: str | None = None


class UserUpdated(EventPayload):
    event_type = "user.updated"
    user_id: uuid.UUID
    username: str
    email: str
    role: str
    is_active: bool
    timezone: str = "UTC"
    full_name: str | None = None


class UserDeactivated(EventPayload):
    event_type = "user.deactivated"
    user_id: uuid.UUID
    username: str


class LoginSucceeded(EventPayload):
    event_type = "login.succeeded"
    user_id: uuid.UUID
    username: str
    session_id: uuid.UUID | None = None
    ip_address: str | None = None
    user_agent: str | None = None


class LoginFailed(EventPayload):
    event_type = "login.failed"
    username_attempted: str
    user_id: uuid.UUID | None = None
    ip_address: str | None = None
    user_agent: str | None = None
    reason: str
    consecutive_failures: int = 0


class AccountLocked(EventPayload):
    event_type = "account.locked"
    user_id: uuid.UUID
    username: str
    locked_until: datetime
    consecutive_failures: int
    ip_address: str | None = None


class TwoFactorEnabled(EventPayload):
    event_type = "two_factor.enabled"
    user_id: uuid.UUID


class TwoFactorDisabled(EventPayload):
    event_type = "two_factor.disabled"
    user_id: uuid.UUID


class ApiKeyCreated(EventPayload):
    event_type = "api_key.created"
    key_id: uuid.UUID
    user_id: uuid.UUID
    name: str
    prefix: str
    scopes: list[str] = []
    expires_at: datetime | None = None
    rate_limit: int | None = None


class ApiKeyRevoked(EventPayload):
    event_type = "api_key.revoked"
    key_id: uuid.UUID
    user_id: uuid.UUID
    prefix: str


class SessionRevoked(EventPayload):
    event_type = "session.revoked"
    session_id: uuid.UUID
    user_id: uuid.UUID
    reason: str


class PasswordChanged(EventPayload):
    """The password was changed by its owner (``changed``) or through a reset link (``reset``)."""

    event_type = "password.changed"
    user_id: uuid.UUID
    username: str
    reason: str
    ip_address: str | None = None


class RegistrationAttempted(EventPayload):
    """Someone tried to register with the address of this existing account."""

    event_type = "registration.attempted"
    user_id: uuid.UUID
    username: str
    ip_address: str | None = None


class EmailLinkRequested(EventPayload):
    """Base of the events whose email carries a secret link (not a contract itself).

    The event never carries the secret: ``link_id`` is a random public handle, and the token in
    the link is ``link_token(secret)``, an HMAC of it under a key only the auth and the
    notifications services hold (``AUTH_EMAIL_LINK_SECRET`` = ``NOTIFICATIONS_EMAIL_LINK_SECRET``).
    Whoever reads the topic, the outbox, the inbox or a webhook delivery learns nothing usable;
    auth stores only the token's SHA-256.
    """

    user_id: uuid.UUID
    username: str
    #: where the link goes
    email: str
    link_id: str
    expires_at: datetime

    def link_token(self, secret: str) -> str:
        """The token of the link: base64url (no padding) of HMAC-SHA256 over the event type and
        ``link_id``, 43 characters."""
        message = f"runyard-email-link\n{self.event_type}\n{self.link_id}".encode()
        mac = hmac.new(secret.encode(), message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


class PasswordResetRequested(EmailLinkRequested):
    """Someone asked for a reset link for this account's address; the link goes to ``email``."""

    event_type = "password_reset.requested"
    #: the client that asked
    ip_address: str | None = None


class EmailVerificationRequested(EmailLinkRequested):
    """A verification link for ``email``: a new account's address (``signup``) or the new
    address of an email change (``change``), which takes effect once the link is followed."""

    event_type = "email_verification.requested"
    purpose: str


class EmailVerified(EventPayload):
    """The owner followed a verification link. After an email change ``previous_email`` is the
    address the account had before (the change is effective now); after sign-up it is null."""

    event_type = "email.verified"
    user_id: uuid.UUID
    username: str
    email: str
    previous_email: str | None = None
