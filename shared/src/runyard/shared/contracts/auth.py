"""Events published by the auth service (source ``/runyard/auth``)."""

from __future__ import annotations

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
