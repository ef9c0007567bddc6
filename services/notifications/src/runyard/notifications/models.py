from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from runyard.shared.db import (
    TYPE_ANNOTATION_MAP,
    Timestamps,
    UUIDPrimaryKey,
    schema_metadata,
    utcnow,
)
from runyard.shared.inbox import inbox_table
from runyard.shared.outbox import outbox_table

SCHEMA = "notifications"


class Base(DeclarativeBase):
    """Every table of the service, in its schema."""

    metadata = schema_metadata(SCHEMA)
    type_annotation_map = TYPE_ANNOTATION_MAP


outbox = outbox_table(Base.metadata)
inbox = inbox_table(Base.metadata)


class User(Base):
    """Read model of auth's users, fed by ``user.*`` events; ``sequence`` drops stale updates.

    ``email`` is NULL for a user known only from ``user.deactivated`` (it overtook
    ``user.registered`` on another topic): such a row is a tombstone that is never emailed.
    """

    __tablename__ = "users"

    user_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(255))
    email: Mapped[str | None] = mapped_column(String(320))
    full_name: Mapped[str | None] = mapped_column(String(255))
    is_active: Mapped[bool]
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    role: Mapped[str] = mapped_column(String(20), default="user")
    sequence: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), default=utcnow, onupdate=utcnow
    )


class EmailLog(UUIDPrimaryKey, Timestamps, Base):
    """One email: queued by a consumer, sent (and retried) by the ``email_sender`` worker.

    An email for a user not yet in ``users`` is parked as ``awaiting_user``, with no address,
    subject or body; the user's arrival renders and queues it. ``skipped``: never sent nor
    attempted, the reason in ``error_message``. ``event_data`` is the whole triggering
    CloudEvent, so a parked email can be rendered from it later.
    """

    __tablename__ = "email_logs"
    __table_args__ = (
        CheckConstraint(
            "status IN ('awaiting_user','queued','sending','sent','failed','skipped')",
            name="status",
        ),
        CheckConstraint(
            "status IN ('awaiting_user','skipped')"
            " OR (to_address IS NOT NULL AND subject IS NOT NULL AND body_text IS NOT NULL)",
            name="rendered",
        ),
        Index("ix_email_logs_status_next_attempt_at", "status", "next_attempt_at"),
        Index("ix_email_logs_user_id_created_at_id", "user_id", "created_at", "id"),
    )

    user_id: Mapped[uuid.UUID | None]
    to_address: Mapped[str | None] = mapped_column(String(320))
    subject: Mapped[str | None] = mapped_column(String(500))
    body_text: Mapped[str | None] = mapped_column(Text)
    body_html: Mapped[str | None] = mapped_column(Text)
    template_name: Mapped[str | None] = mapped_column(String(100))
    event_type: Mapped[str] = mapped_column(String(100))
    event_id: Mapped[str] = mapped_column(String(255))
    event_data: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    idempotency_key: Mapped[str] = mapped_column(String(400), unique=True)
    status: Mapped[str] = mapped_column(String(20), default="queued")
    provider: Mapped[str] = mapped_column(String(50), default="smtp")
    message_id: Mapped[str | None] = mapped_column(String(255))
    error_message: Mapped[str | None] = mapped_column(Text)
    retry_count: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]
    opened_at: Mapped[datetime | None]
    clicked_at: Mapped[datetime | None]
    #: One-click unsubscribe link (``List-Unsubscribe``); None for security alerts.
    unsubscribe_url: Mapped[str | None] = mapped_column(Text)


FREQUENCIES = ("immediate", "hourly", "daily", "weekly", "never")
DIGEST_FREQUENCIES = ("hourly", "daily", "weekly")


class NotificationPreference(UUIDPrimaryKey, Timestamps, Base):
    """A user's choice for one event type; no row means the event type's default."""

    __tablename__ = "notification_preferences"
    __table_args__ = (
        UniqueConstraint("user_id", "event_type"),
        CheckConstraint(
            "email_frequency IN ('immediate','hourly','daily','weekly','never')",
            name="email_frequency",
        ),
    )

    user_id: Mapped[uuid.UUID]
    event_type: Mapped[str] = mapped_column(String(100))
    email_enabled: Mapped[bool] = mapped_column(Boolean)
    in_app_enabled: Mapped[bool] = mapped_column(Boolean)
    slack_enabled: Mapped[bool] = mapped_column(Boolean)
    webhook_enabled: Mapped[bool] = mapped_column(Boolean)
    email_frequency: Mapped[str] = mapped_column(String(20))


class DigestItem(UUIDPrimaryKey, Timestamps, Base):
    """An event waiting for the user's next hourly/daily/weekly digest.

    ``included_in_digest`` flips (with ``digest_email_id``) in the transaction that stores the
    digest's ``email_logs`` row.
    """

    __tablename__ = "email_digest_queue"
    __table_args__ = (
        UniqueConstraint("user_id", "event_id"),
        CheckConstraint("frequency IN ('hourly','daily','weekly')", name="frequency"),
        Index(
            "ix_email_digest_queue_due",
            "scheduled_for",
            "user_id",
            postgresql_where=text("NOT included_in_digest"),
        ),
    )

    user_id: Mapped[uuid.UUID]
    event_type: Mapped[str] = mapped_column(String(100))
    event_id: Mapped[str] = mapped_column(String(255))
    event_data: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    #: One line naming the event, rendered when it was queued.
    title: Mapped[str] = mapped_column(String(500))
    frequency: Mapped[str] = mapped_column(String(20))
    scheduled_for: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    included_in_digest: Mapped[bool] = mapped_column(Boolean, default=False)
    digest_email_id: Mapped[uuid.UUID | None]


class InAppNotification(UUIDPrimaryKey, Base):
    """One entry of a user's in-app inbox."""

    __tablename__ = "in_app_notifications"
    __table_args__ = (
        UniqueConstraint("user_id", "event_id"),
        Index("ix_in_app_notifications_user_id_created_at_id", "user_id", "created_at", "id"),
        Index(
            "ix_in_app_notifications_unread",
            "user_id",
            postgresql_where=text("read_at IS NULL"),
        ),
    )

    user_id: Mapped[uuid.UUID]
    event_type: Mapped[str] = mapped_column(String(100))
    event_id: Mapped[str] = mapped_column(String(255))
    title: Mapped[str] = mapped_column(String(500))
    body: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    read_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), default=utcnow
    )


class AlertThrottle(Base):
    """The open throttle window of one alert type for one user.

    The first alert of a window is emailed at once; the others raise ``suppressed_count`` and
    re-render the summary email (``summary_email_id``), queued for ``window_ends_at``.
    """

    __tablename__ = "alert_throttles"

    user_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    event_type: Mapped[str] = mapped_column(String(100), primary_key=True)
    window_started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    window_ends_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    suppressed_count: Mapped[int] = mapped_column(Integer, default=0)
    summary_email_id: Mapped[uuid.UUID | None]
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), default=utcnow, onupdate=utcnow
    )
