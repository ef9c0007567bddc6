from __future__ import annotations

import functools
import re
import uuid
import zoneinfo
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from runyard.auth.passwords import MAX_LENGTH as PASSWORD_MAX_LENGTH
from runyard.auth.passwords import MIN_LENGTH as PASSWORD_MIN_LENGTH

_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s.]+(\.[^@\s.]+)+$")

Role = Literal["admin", "user", "viewer"]
Scope = Literal[
    "experiments:read",
    "experiments:write",
    "webhooks:read",
    "webhooks:write",
    "notifications:read",
    "notifications:write",
    "admin",
]
SCOPES: tuple[str, ...] = Scope.__args__  # type: ignore[attr-defined]


def _check_email(value: str) -> str:
    if not _EMAIL.match(value):
        raise ValueError("not a valid email address")
    return value


@functools.cache
def _timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def _check_timezone(value: str) -> str:
    if value not in _timezones():
        raise ValueError("not an IANA time zone name (for example Europe/Berlin)")
    return value


def _unique(values: list[str]) -> list[str]:
    if len(set(values)) != len(values):
        raise ValueError("scopes must not repeat")
    return values


Username = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=3, max_length=50, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
    ),
]
Email = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=254), AfterValidator(_check_email)
]
NewPassword = Annotated[str, Field(min_length=PASSWORD_MIN_LENGTH, max_length=PASSWORD_MAX_LENGTH)]
TimeZone = Annotated[str, AfterValidator(_check_timezone)]


class Page(BaseModel):
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null: last.")


# --- accounts ---------------------------------------------------------------------------------


class RegisterRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: Username = Field(description="3-50 characters: letters, digits, `_`, `.`, `-`.")
    email: Email
    password: NewPassword = Field(
        description="12-128 characters, not a common password, not the username or email."
    )


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    username: str
    email: str
    full_name: str | None
    role: str
    is_active: bool
    timezone: str
    totp_enabled: bool
    email_verified_at: datetime | None = Field(
        description="When a verification link sent to `email` was followed; null: not yet."
    )
    pending_email: str | None = Field(
        default=None,
        description="A new address waiting for its verification link to be followed (your own "
        "account only); `email` changes when it is.",
    )
    last_login_at: datetime | None
    created_at: datetime


class AdminUserOut(UserOut):
    failed_login_attempts: int
    locked_until: datetime | None
    updated_at: datetime


class AdminUserPage(Page):
    items: list[AdminUserOut]


CurrentPassword = Annotated[
    str | None,
    Field(
        max_length=PASSWORD_MAX_LENGTH,
        description="Your current password: confirms that you, not only your token, ask.",
    ),
]
StepUpCode = Annotated[
    str | None,
    Field(
        max_length=32,
        description="With two-factor authentication on: a code from the authenticator app or "
        "an unused backup code, instead of `current_password`.",
    ),
]


class UpdateMeRequest(BaseModel):
    """Change your own account. A new password needs `current_password`; a new email address
    `current_password` or (2FA on) `code`, and takes effect once the link sent to it is
    followed."""

    model_config = ConfigDict(extra="forbid")

    email: Email | None = None
    full_name: Annotated[str, StringConstraints(strip_whitespace=True, max_length=255)] | None = (
        None
    )
    timezone: TimeZone | None = Field(default=None, description="IANA name, e.g. `Europe/Berlin`.")
    current_password: CurrentPassword = None
    code: StepUpCode = None
    new_password: NewPassword | None = None


class AdminUpdateUserRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Role | None = None
    is_active: bool | None = None


# --- logins, tokens, sessions -----------------------------------------------------------------


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    login: str = Field(min_length=1, max_length=254, description="Username or email address.")
    password: str = Field(min_length=1, max_length=PASSWORD_MAX_LENGTH)
    totp_code: str | None = Field(
        default=None,
        max_length=32,
        description="With two-factor authentication on: the authenticator's 6-digit code, "
        "or one of the backup codes.",
    )


class TokenResponse(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="Seconds until the access token expires.")
    refresh_expires_in: int = Field(description="Seconds until the refresh token expires.")


class RefreshRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refresh_token: str = Field(min_length=1, max_length=256)


class LogoutRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refresh_token: str | None = Field(default=None, min_length=1, max_length=256)


class SessionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    ip_address: str | None
    user_agent: str | None
    device_type: str
    browser: str | None
    os: str | None
    location: str | None
    created_at: datetime
    last_active: datetime
    expires_at: datetime = Field(validation_alias="refresh_expires_at")
    is_active: bool
    logged_out_at: datetime | None
    revoked_reason: str | None
    kind: Literal["login", "basic_auth"] = Field(
        description="`login`: a login (the console, the SDK, `POST /auth/login`). "
        "`basic_auth`: the account's one session of a username and password sent as HTTP "
        "Basic to MLflow's API (`MLFLOW_TRACKING_USERNAME`/`PASSWORD`), checked by the "
        "gateway; every check reuses it. Ending it makes the next check start a new one."
    )
    current: bool = Field(default=False, description="The session of this request.")


class SessionPage(Page):
    items: list[SessionOut]


class RevokeAllRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    include_current: bool = Field(
        default=False, description="Also end the session of this request (log out here too)."
    )
    revoke_api_keys: bool = Field(default=False, description="Also revoke every API key.")


class RevokedOut(BaseModel):
    sessions_revoked: int
    api_keys_revoked: int


# --- recovery and email ownership -------------------------------------------------------------


class PasswordResetRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: Email


class PasswordResetConfirm(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: str = Field(min_length=1, max_length=256, description="The token from the email.")
    password: NewPassword = Field(
        description="12-128 characters, not a common password, not the username or email."
    )


class VerifyEmailRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: str = Field(min_length=1, max_length=256, description="The token from the email.")


class Accepted(BaseModel):
    detail: str


class LoginHistoryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    created_at: datetime
    success: bool
    failure_reason: str | None
    login_method: str
    ip_address: str | None
    user_agent: str | None
    session_id: uuid.UUID | None


class LoginHistoryPage(Page):
    items: list[LoginHistoryOut]


# --- two-factor authentication ----------------------------------------------------------------


class TwoFactorSetupOut(BaseModel):
    secret: str = Field(description="Base32 secret, for typing into an authenticator app.")
    otpauth_uri: str = Field(description="`otpauth://totp/...` URI, usually shown as a QR code.")


class EnableTwoFactorRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(
        min_length=1, max_length=32, description="A 6-digit code from the newly set-up app."
    )
    current_password: CurrentPassword = None


class CodeRequest(BaseModel):
    """Disabling 2FA and new backup codes are confirmed with a code (required)."""

    model_config = ConfigDict(extra="forbid")

    code: str | None = Field(
        default=None, min_length=1, max_length=32, description="6-digit code or a backup code."
    )


class BackupCodesOut(BaseModel):
    backup_codes: list[str] = Field(description="Each works once. Shown only now.")


# --- API keys ---------------------------------------------------------------------------------


class CreateApiKeyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    scopes: Annotated[list[Scope], Field(min_length=1), AfterValidator(_unique)]
    expires_at: datetime | None = Field(
        default=None, description="RFC 3339 with an offset; must be in the future."
    )
    rate_limit: int | None = Field(
        default=None, ge=1, le=100_000, description="Requests per minute; null: gateway default."
    )
    current_password: CurrentPassword = None
    code: StepUpCode = None


class ApiKeyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    prefix: str = Field(description="The key's first characters, for telling keys apart.")
    scopes: list[str]
    rate_limit: int | None
    expires_at: datetime | None
    last_used_at: datetime | None
    is_active: bool
    revoked_at: datetime | None
    created_at: datetime


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="The API key. Shown only in this response: store it now.")


class ApiKeyPage(Page):
    items: list[ApiKeyOut]


class ApiUsageOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    timestamp: datetime
    method: str
    endpoint: str
    status_code: int
    response_time_ms: float
    ip_address: str | None


class ApiKeyUsageOut(Page):
    key_id: uuid.UUID
    total_requests: int
    last_used_at: datetime | None
    items: list[ApiUsageOut]


# --- internal (gateway -> auth) ---------------------------------------------------------------


class VerifyApiKeyRequest(BaseModel):
    key: str = Field(max_length=256)


class ApiKeyIdentity(BaseModel):
    key_id: uuid.UUID
    user_id: uuid.UUID
    username: str
    role: Role
    scopes: list[str] = Field(description="The key's scopes that the owner's current role allows.")
    rate_limit: int | None
    expires_at: datetime | None


class BasicCredentials(BaseModel):
    """``Authorization: Basic`` credentials the gateway received on an MLflow path."""

    model_config = ConfigDict(extra="forbid")

    login: str = Field(min_length=1, max_length=254)
    password: str = Field(min_length=1, max_length=PASSWORD_MAX_LENGTH)


class BasicAccess(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="Seconds until the access token expires.")
    session_id: uuid.UUID


class SessionStatus(BaseModel):
    session_id: uuid.UUID
    user_id: uuid.UUID
    active: bool = Field(description="Not logged out or revoked, refresh token not expired.")
    user_active: bool
    role: Role
    username: str


# --- keys -------------------------------------------------------------------------------------


class Jwk(BaseModel):
    kty: str
    crv: str
    x: str
    kid: str
    alg: str
    use: str


class JwkSet(BaseModel):
    keys: list[Jwk]
