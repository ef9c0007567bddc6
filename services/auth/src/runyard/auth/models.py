from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from runyard.shared.db import (
    TYPE_ANNOTATION_MAP,
    Timestamps,
    UUIDPrimaryKey,
    new_id,
    schema_metadata,
    utcnow,
)
from runyard.shared.inbox import inbox_table
from runyard.shared.outbox import outbox_table

SCHEMA = "auth"


class Base(DeclarativeBase):
    """Every table of the service, in its schema."""

    metadata = schema_metadata(SCHEMA)
    type_annotation_map = TYPE_ANNOTATION_MAP


outbox = outbox_table(Base.metadata)
inbox = inbox_table(Base.metadata)

ROLES = ("admin", "user", "viewer")


class User(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "users"
    __table_args__ = (CheckConstraint("role IN ('admin','user','viewer')", name="role"),)

    username: Mapped[str] = mapped_column(String(50))
    email: Mapped[str] = mapped_column(String(254))
    password_hash: Mapped[str] = mapped_column(String(255))
    full_name: Mapped[str | None] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(20), default="user")
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    #: Consecutive failed logins (Keycloak's ``numFailures``); see ``lockout.py``.
    failed_login_attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_failed_login_at: Mapped[datetime | None]
    locked_until: Mapped[datetime | None]
    last_login_at: Mapped[datetime | None]
    #: Fernet-encrypted base32 secret; set (not yet enabled) between 2FA setup and enable.
    totp_secret: Mapped[str | None] = mapped_column(Text)
    totp_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    #: The 30-second step of the last accepted code: that code and older ones are refused.
    totp_last_used_step: Mapped[int | None] = mapped_column(BigInteger)
    #: When the owner followed a verification link sent to ``email``; NULL: not verified.
    email_verified_at: Mapped[datetime | None]
    #: Grows by one with every change published as a ``user.*``/``account.*``/``two_factor.*``
    #: event; the events carry it as ``sequence``.
    version: Mapped[int] = mapped_column(Integer, default=1)


Index("uq_users_username_lower", func.lower(User.username), unique=True)
Index("uq_users_email_lower", func.lower(User.email), unique=True)


class LoginHistory(Base):
    __tablename__ = "login_history"
    __table_args__ = (
        Index("ix_login_history_user_id_created_at", "user_id", "created_at"),
        Index("ix_login_history_client_key_created_at", "client_key", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    username_attempted: Mapped[str] = mapped_column(String(254))
    login_method: Mapped[str] = mapped_column(String(20), default="password")
    success: Mapped[bool] = mapped_column(Boolean)
    failure_reason: Mapped[str | None] = mapped_column(String(50))
    ip_address: Mapped[str | None] = mapped_column(String(45))
    #: What the per-client limit counts by: the IPv4 address, or the IPv6 address's /64.
    client_key: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    #: Not filled yet (no GeoIP database); kept for the data model's column set.
    location: Mapped[str | None] = mapped_column(String(255))
    session_id: Mapped[uuid.UUID | None]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now(), default=utcnow)


class UnknownLoginFailure(Base):
    """Lockout state for logins that name no user, so they lock exactly like real accounts."""

    __tablename__ = "unknown_login_failures"

    login_key: Mapped[str] = mapped_column(String(254), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_failure_at: Mapped[datetime | None]
    locked_until: Mapped[datetime | None]


class SessionLog(UUIDPrimaryKey, Timestamps, Base):
    """One login: its refresh token (hashed, rotating), where it came from, whether it lives."""

    __tablename__ = "session_logs"
    __table_args__ = (
        Index("ix_session_logs_user_id_created_at", "user_id", "created_at"),
        Index("uq_session_logs_session_token", "session_token", unique=True),
        CheckConstraint("kind IN ('login','basic_auth')", name="kind"),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    #: SHA-256 (hex) of the session's current refresh token.
    session_token: Mapped[str] = mapped_column(String(64))
    refresh_expires_at: Mapped[datetime]
    ip_address: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    device_type: Mapped[str] = mapped_column(String(20), default="other")
    browser: Mapped[str | None] = mapped_column(String(100))
    os: Mapped[str | None] = mapped_column(String(100))
    location: Mapped[str | None] = mapped_column(String(255))
    last_active: Mapped[datetime]
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    logged_out_at: Mapped[datetime | None]
    revoked_reason: Mapped[str | None] = mapped_column(String(50))
    #: ``login``: a login that got a refresh token; ``basic_auth``: the user's one session of
    #: HTTP Basic credentials the gateway checks (MLflow's username and password), see
    #: ``logins.check_basic_credentials``.
    kind: Mapped[str] = mapped_column(String(20), default="login", server_default="login")


class RotatedRefreshToken(Base):
    """A refresh token that was already exchanged: presenting it again revokes its session."""

    __tablename__ = "rotated_refresh_tokens"
    __table_args__ = (Index("ix_rotated_refresh_tokens_expires_at", "expires_at"),)

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    session_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("session_logs.id", ondelete="CASCADE"))
    rotated_at: Mapped[datetime]
    expires_at: Mapped[datetime]


class BackupCode(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "backup_codes"
    __table_args__ = (
        Index("ix_backup_codes_user_unused", "user_id", "is_used"),
        Index("uq_backup_codes_code_hash", "code_hash", unique=True),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    #: argon2id hash of the code (like a password).
    code_hash: Mapped[str] = mapped_column(String(255))
    is_used: Mapped[bool] = mapped_column(Boolean, default=False)
    used_at: Mapped[datetime | None]
    ip_address: Mapped[str | None] = mapped_column(String(45))


class ApiKey(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "api_keys"
    __table_args__ = (
        Index("uq_api_keys_key_hash", "key_hash", unique=True),
        Index("ix_api_keys_user_id_created_at", "user_id", "created_at"),
        Index("ix_api_keys_prefix", "prefix"),
        Index("ix_api_keys_is_active", "is_active"),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    #: SHA-256 (hex) of the whole key.
    key_hash: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(16))
    scopes: Mapped[list[str]] = mapped_column(
        ARRAY(Text), default=list, server_default=text("'{}'")
    )
    #: Requests per minute the gateway allows this key; NULL: the gateway's default.
    rate_limit: Mapped[int | None] = mapped_column(Integer)
    last_used_at: Mapped[datetime | None]
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class ApiUsage(Base):
    """One request made with a key, from the gateway's ``api_key.used`` event."""

    __tablename__ = "api_usage"
    __table_args__ = (Index("ix_api_usage_api_key_id_timestamp", "api_key_id", "timestamp"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    api_key_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"))
    endpoint: Mapped[str] = mapped_column(String(500))
    method: Mapped[str] = mapped_column(String(10))
    status_code: Mapped[int] = mapped_column(Integer)
    response_time_ms: Mapped[float] = mapped_column(Float)
    ip_address: Mapped[str | None] = mapped_column(String(45))
    timestamp: Mapped[datetime]


class PasswordResetRequest(Base):
    """One ``POST /password-reset``, known address or not: the per-address and per-client limits
    count these rows, and a worker turns the ones for an account into a token and an email, so
    the request itself does the same work whatever the address. ``email`` is cleared once done."""

    __tablename__ = "password_reset_requests"
    __table_args__ = (
        Index("ix_password_reset_requests_email_key_created_at", "email_key", "created_at"),
        Index("ix_password_reset_requests_client_key_created_at", "client_key", "created_at"),
        Index("ix_password_reset_requests_processed_at_created_at", "processed_at", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    #: SHA-256 (hex) of the lower-cased address.
    email_key: Mapped[str] = mapped_column(String(64))
    email: Mapped[str | None] = mapped_column(String(254))
    client_key: Mapped[str | None] = mapped_column(String(64))
    ip_address: Mapped[str | None] = mapped_column(String(45))
    created_at: Mapped[datetime]
    processed_at: Mapped[datetime | None]


class PasswordResetToken(UUIDPrimaryKey, Base):
    """A single-use reset token sent by email; only its SHA-256 is stored."""

    __tablename__ = "password_reset_tokens"
    __table_args__ = (
        Index("uq_password_reset_tokens_token_hash", "token_hash", unique=True),
        Index("ix_password_reset_tokens_user_id", "user_id"),
        Index("ix_password_reset_tokens_expires_at", "expires_at"),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(String(64))
    #: The address the token was sent to.
    email: Mapped[str] = mapped_column(String(254))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class EmailVerification(UUIDPrimaryKey, Base):
    """A link sent to ``email`` to prove the user reads it: the address of a new account
    (``signup``), or the new address of an email change (``change``), which takes effect only
    when the link is followed. Only the token's SHA-256 is stored."""

    __tablename__ = "email_verifications"
    __table_args__ = (
        CheckConstraint("purpose IN ('signup','change')", name="purpose"),
        Index("uq_email_verifications_token_hash", "token_hash", unique=True),
        Index("ix_email_verifications_user_id_created_at", "user_id", "created_at"),
        Index("ix_email_verifications_expires_at", "expires_at"),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    email: Mapped[str] = mapped_column(String(254))
    purpose: Mapped[str] = mapped_column(String(10))
    token_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
