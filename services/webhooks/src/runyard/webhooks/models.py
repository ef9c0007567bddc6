from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
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

SCHEMA = "webhooks"


class Base(DeclarativeBase):
    """Every table of the service, in its schema."""

    metadata = schema_metadata(SCHEMA)
    type_annotation_map = TYPE_ANNOTATION_MAP


outbox = outbox_table(Base.metadata)
inbox = inbox_table(Base.metadata)


class WebhookConfiguration(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "webhook_configurations"
    __table_args__ = (
        UniqueConstraint("owner_id", "url"),
        CheckConstraint("provider_type IN ('generic','slack','teams')", name="provider_type"),
    )

    owner_id: Mapped[uuid.UUID] = mapped_column(index=True)
    name: Mapped[str] = mapped_column(String(255))
    provider_type: Mapped[str] = mapped_column(String(20), index=True)
    url: Mapped[str] = mapped_column(Text)
    #: The ``whsec_...`` signing secret, Fernet-encrypted (see signing.SecretBox).
    secret_encrypted: Mapped[str] = mapped_column(Text)
    enabled_events: Mapped[list[str]] = mapped_column(JSONB, default=list)
    description: Mapped[str | None] = mapped_column(Text)
    settings: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True, index=True)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    last_used_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    #: First failure of the current run of consecutive failures (``None`` after a success).
    failing_since: Mapped[datetime | None]
    #: The secret replaced by the last rotation; it keeps signing until it expires.
    previous_secret_encrypted: Mapped[str | None] = mapped_column(Text)
    previous_secret_expires_at: Mapped[datetime | None]
    disabled_at: Mapped[datetime | None]
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    #: Rate limit and 429s: no request starts before this (durable scheduling, not sleeps).
    next_send_at: Mapped[datetime | None]


class WebhookDelivery(UUIDPrimaryKey, Timestamps, Base):
    """One event owed to one endpoint; retried via ``next_attempt_at`` until it settles."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("webhook_id", "event_id"),
        CheckConstraint("status IN ('pending','succeeded','failed')", name="status"),
        CheckConstraint("trigger_type IN ('event','manual_retry','replay')", name="trigger_type"),
        Index(
            "ix_webhook_deliveries_due",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
        ),
        Index("ix_webhook_deliveries_webhook_id_created_at", "webhook_id", "created_at"),
    )

    webhook_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhook_configurations.id", ondelete="CASCADE")
    )
    event_id: Mapped[str] = mapped_column(Text)
    event_type: Mapped[str] = mapped_column(String(100))
    #: The CloudEvents document, as received.
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    attempt_count: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_attempt_at: Mapped[datetime | None]
    #: The trigger the next attempt is logged with (back to ``event`` after it).
    trigger_type: Mapped[str] = mapped_column(String(20), default="event", server_default="event")
    #: ``False`` after a manual retry or replay of a settled delivery: one attempt, no schedule.
    automatic_retries: Mapped[bool] = mapped_column(
        Boolean, default=True, server_default=text("true")
    )


class WebhookLog(UUIDPrimaryKey, Base):
    """One row per HTTP attempt (event-driven or manual)."""

    __tablename__ = "webhook_logs"
    __table_args__ = (
        CheckConstraint("status IN ('success','failed')", name="status"),
        CheckConstraint(
            "trigger_type IN ('event','test','manual_retry','replay')", name="trigger_type"
        ),
        Index("ix_webhook_logs_webhook_id_sent_at", "webhook_id", "sent_at"),
        Index("ix_webhook_logs_delivery_id", "delivery_id"),
    )

    webhook_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhook_configurations.id", ondelete="CASCADE")
    )
    delivery_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("webhook_deliveries.id", ondelete="SET NULL")
    )
    owner_id: Mapped[uuid.UUID]
    event_id: Mapped[str] = mapped_column(Text)
    event_type: Mapped[str] = mapped_column(String(100))
    provider_type: Mapped[str] = mapped_column(String(20))
    url: Mapped[str] = mapped_column(Text)
    attempt_number: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20))
    response_status_code: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[str | None] = mapped_column(Text)
    error_message: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int] = mapped_column(Integer)
    #: What caused the attempt: fan-out (and its scheduled retries), the test endpoint, a
    #: manual retry of one delivery, or a replay of failed deliveries.
    trigger_type: Mapped[str] = mapped_column(String(20), default="event")
    sent_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: When the delivery is tried next after this attempt (``None``: settled).
    next_attempt_at: Mapped[datetime | None]


class PendingDeliveryEvents(Base):
    """Attempts recorded for an endpoint whose ``webhook.deliveries_updated`` event is not
    written yet: the recorder's batches of a short window add up here (in their own
    transactions) and the ``delivery-events`` worker turns the row into one event."""

    __tablename__ = "pending_delivery_events"

    webhook_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey(f"{SCHEMA}.webhook_configurations.id", ondelete="CASCADE"), primary_key=True
    )
    owner_id: Mapped[uuid.UUID]
    attempts: Mapped[int] = mapped_column(Integer)
    succeeded: Mapped[int] = mapped_column(Integer)
    failed: Mapped[int] = mapped_column(Integer)
    retrying: Mapped[int] = mapped_column(Integer)
    #: the window's last settled deliveries (``DeliveryOutcome`` documents), oldest first
    latest: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    #: the window's first batch (the row is due a window after it) and its last one
    first_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class NotificationPreference(Base):
    """Read model of the notifications service's preferences (``notification_preference.updated``):
    per user and event type, whether generic endpoints (``webhook_enabled``) and Slack
    endpoints (``slack_enabled``) get it. No row: not muted."""

    __tablename__ = "notification_preferences"

    user_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    event_type: Mapped[str] = mapped_column(String(100), primary_key=True)
    webhook_enabled: Mapped[bool] = mapped_column(Boolean)
    slack_enabled: Mapped[bool] = mapped_column(Boolean)
    #: ``time`` of the event the row came from: an older event never overwrites a newer one.
    event_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
