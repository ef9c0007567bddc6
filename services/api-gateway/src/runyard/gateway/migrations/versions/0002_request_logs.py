"""request logs, per-minute/hour metric summaries, audit trail

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "gateway"


def _now(name: str) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False)


def upgrade() -> None:
    op.create_table(
        "api_request_logs",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("request_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("method", sa.String(10), nullable=False),
        sa.Column("endpoint", sa.String(2048), nullable=False),
        sa.Column("route", sa.String(512), nullable=False),
        sa.Column("service", sa.String(32)),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("response_time_ms", sa.Float(), nullable=False),
        sa.Column("request_size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("response_size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("ip_address", sa.String(45)),
        sa.Column("user_agent", sa.Text()),
        sa.Column("user_id", sa.Uuid()),
        sa.Column("api_key_id", sa.Uuid()),
        sa.Column("auth_method", sa.String(16)),
        sa.Column("error_message", sa.Text()),
        sa.Column("request_payload_sample", postgresql.JSONB()),
        sa.Column("response_payload_sample", postgresql.JSONB()),
        _now("created_at"),
        _now("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_api_request_logs"),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_api_request_logs_request_time", "api_request_logs", ["request_time"], schema=SCHEMA
    )
    op.create_index(
        "ix_api_request_logs_api_key_id_id", "api_request_logs", ["api_key_id", "id"], schema=SCHEMA
    )
    op.create_index(
        "ix_api_request_logs_user_id_id", "api_request_logs", ["user_id", "id"], schema=SCHEMA
    )
    op.create_table(
        "api_metrics_summary",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("aggregation_type", sa.String(10), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("period_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("method", sa.String(10), nullable=False),
        sa.Column("endpoint", sa.String(512), nullable=False),
        sa.Column("total_requests", sa.Integer(), nullable=False),
        sa.Column("successful_requests", sa.Integer(), nullable=False),
        sa.Column("failed_requests", sa.Integer(), nullable=False),
        sa.Column("server_errors", sa.Integer(), nullable=False),
        sa.Column("error_rate", sa.Float(), nullable=False),
        sa.Column("requests_per_second", sa.Float(), nullable=False),
        sa.Column("avg_response_time_ms", sa.Float(), nullable=False),
        sa.Column("p50_response_time_ms", sa.Float(), nullable=False),
        sa.Column("p95_response_time_ms", sa.Float(), nullable=False),
        sa.Column("p99_response_time_ms", sa.Float(), nullable=False),
        _now("created_at"),
        _now("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_api_metrics_summary"),
        sa.UniqueConstraint(
            "aggregation_type",
            "period_start",
            "method",
            "endpoint",
            name="uq_api_metrics_summary_period",
        ),
        sa.CheckConstraint("aggregation_type IN ('minute', 'hour')", name="aggregation_type"),
        schema=SCHEMA,
    )
    op.create_table(
        "system_logs",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("username", sa.String(150)),
        sa.Column("action", sa.String(600), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("details", postgresql.JSONB(), nullable=False),
        sa.Column("error_message", sa.Text()),
        _now("created_at"),
        _now("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_system_logs"),
        sa.CheckConstraint("status IN ('success', 'failure')", name="status"),
        schema=SCHEMA,
    )
    op.create_index("ix_system_logs_user_id_id", "system_logs", ["user_id", "id"], schema=SCHEMA)
    op.create_index("ix_system_logs_created_at", "system_logs", ["created_at"], schema=SCHEMA)


def downgrade() -> None:
    op.drop_table("system_logs", schema=SCHEMA)
    op.drop_table("api_metrics_summary", schema=SCHEMA)
    op.drop_table("api_request_logs", schema=SCHEMA)
