"""The gateway's schema: request logs, their per-minute/hour summaries, the audit trail.

Core tables (not ORM classes): rows are only ever written in batches and read as lists.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    Identity,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase

from runyard.shared.db import TYPE_ANNOTATION_MAP, schema_metadata
from runyard.shared.inbox import inbox_table
from runyard.shared.outbox import outbox_table

SCHEMA = "gateway"


class Base(DeclarativeBase):
    """Every table of the service, in its schema."""

    metadata = schema_metadata(SCHEMA)
    type_annotation_map = TYPE_ANNOTATION_MAP


outbox = outbox_table(Base.metadata)
inbox = inbox_table(Base.metadata)


def _timestamps() -> list[Column]:  # type: ignore[type-arg]
    return [
        Column("created_at", DateTime(timezone=True), server_default=func.now(), nullable=False),
        Column("updated_at", DateTime(timezone=True), server_default=func.now(), nullable=False),
    ]


api_request_logs = Table(
    "api_request_logs",
    Base.metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("request_id", String(128), nullable=False),
    Column("request_time", DateTime(timezone=True), nullable=False),
    Column("method", String(10), nullable=False),
    #: the path as requested; ``route`` is the same with ids replaced by ``{id}``
    Column("endpoint", String(2048), nullable=False),
    Column("route", String(512), nullable=False),
    Column("service", String(32)),
    Column("status_code", Integer, nullable=False),
    Column("response_time_ms", Float, nullable=False),
    Column("request_size_bytes", BigInteger, nullable=False),
    Column("response_size_bytes", BigInteger, nullable=False),
    Column("ip_address", String(45)),
    Column("user_agent", Text),
    Column("user_id", Uuid),
    Column("api_key_id", Uuid),
    Column("auth_method", String(16)),
    Column("error_message", Text),
    Column("request_payload_sample", JSONB),
    Column("response_payload_sample", JSONB),
    *_timestamps(),
    Index("ix_api_request_logs_request_time", "request_time"),
    Index("ix_api_request_logs_api_key_id_id", "api_key_id", "id"),
    Index("ix_api_request_logs_user_id_id", "user_id", "id"),
)

api_metrics_summary = Table(
    "api_metrics_summary",
    Base.metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("aggregation_type", String(10), nullable=False),
    Column("period_start", DateTime(timezone=True), nullable=False),
    Column("period_end", DateTime(timezone=True), nullable=False),
    #: ``*`` / ``*``: every request of the period
    Column("method", String(10), nullable=False),
    Column("endpoint", String(512), nullable=False),
    Column("total_requests", Integer, nullable=False),
    Column("successful_requests", Integer, nullable=False),
    Column("failed_requests", Integer, nullable=False),
    Column("server_errors", Integer, nullable=False),
    Column("error_rate", Float, nullable=False),
    Column("requests_per_second", Float, nullable=False),
    Column("avg_response_time_ms", Float, nullable=False),
    Column("p50_response_time_ms", Float, nullable=False),
    Column("p95_response_time_ms", Float, nullable=False),
    Column("p99_response_time_ms", Float, nullable=False),
    *_timestamps(),
    # as the migration named it (a given unique-constraint name is used as it is)
    UniqueConstraint(
        "aggregation_type",
        "period_start",
        "method",
        "endpoint",
        name="uq_api_metrics_summary_period",
    ),
    CheckConstraint("aggregation_type IN ('minute', 'hour')", name="aggregation_type"),
)

system_logs = Table(
    "system_logs",
    Base.metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("user_id", Uuid, nullable=False),
    Column("username", String(150)),
    #: ``POST /api/v1/experiments/{id}/start``
    Column("action", String(600), nullable=False),
    Column("status", String(10), nullable=False),
    Column("status_code", Integer, nullable=False),
    Column("details", JSONB, nullable=False),
    Column("error_message", Text),
    *_timestamps(),
    CheckConstraint("status IN ('success', 'failure')", name="status"),
    Index("ix_system_logs_user_id_id", "user_id", "id"),
    Index("ix_system_logs_created_at", "created_at"),
)
