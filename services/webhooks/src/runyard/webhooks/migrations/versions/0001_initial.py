"""webhooks schema: webhook_configurations, webhook_deliveries, webhook_logs, outbox, inbox

Revision ID: 0001
Revises:
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from runyard.shared.migrations import create_outbox_and_inbox, drop_outbox_and_inbox

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "webhooks"


def _timestamps() -> list[sa.Column[Any]]:
    return [
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
    ]


def upgrade() -> None:
    create_outbox_and_inbox(op.get_bind(), SCHEMA)
    op.create_table(
        "webhook_configurations",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("provider_type", sa.String(20), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("secret_encrypted", sa.Text(), nullable=False),
        sa.Column("enabled_events", postgresql.JSONB(), nullable=False),
        sa.Column("description", sa.Text()),
        sa.Column("settings", postgresql.JSONB(), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True)),
        sa.Column("last_error", sa.Text()),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_configurations"),
        sa.UniqueConstraint("owner_id", "url", name="uq_webhook_configurations_owner_id_url"),
        sa.CheckConstraint(
            "provider_type IN ('generic','slack','teams')",
            name="ck_webhook_configurations_provider_type",
        ),
        schema=SCHEMA,
    )
    for column in ("owner_id", "provider_type", "is_active"):
        op.create_index(
            f"ix_webhook_configurations_{column}", "webhook_configurations", [column], schema=SCHEMA
        )

    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("webhook_id", sa.Uuid(), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("event_type", sa.String(100), nullable=False),
        sa.Column("payload", postgresql.JSONB(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempt_count", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True)),
        sa.Column("last_status_code", sa.Integer()),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_deliveries"),
        sa.ForeignKeyConstraint(
            ["webhook_id"],
            [f"{SCHEMA}.webhook_configurations.id"],
            name="fk_webhook_deliveries_webhook_id_webhook_configurations",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint(
            "webhook_id", "event_id", name="uq_webhook_deliveries_webhook_id_event_id"
        ),
        sa.CheckConstraint(
            "status IN ('pending','succeeded','failed')", name="ck_webhook_deliveries_status"
        ),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_webhook_deliveries_due",
        "webhook_deliveries",
        ["next_attempt_at"],
        schema=SCHEMA,
        postgresql_where=sa.text("status = 'pending'"),
    )

    op.create_table(
        "webhook_logs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("webhook_id", sa.Uuid(), nullable=False),
        sa.Column("delivery_id", sa.Uuid()),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("event_type", sa.String(100), nullable=False),
        sa.Column("provider_type", sa.String(20), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("attempt_number", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("response_status_code", sa.Integer()),
        sa.Column("response_body", sa.Text()),
        sa.Column("error_message", sa.Text()),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("trigger_type", sa.String(20), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_logs"),
        sa.ForeignKeyConstraint(
            ["webhook_id"],
            [f"{SCHEMA}.webhook_configurations.id"],
            name="fk_webhook_logs_webhook_id_webhook_configurations",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            [f"{SCHEMA}.webhook_deliveries.id"],
            name="fk_webhook_logs_delivery_id_webhook_deliveries",
            ondelete="SET NULL",
        ),
        sa.CheckConstraint("status IN ('success','failed')", name="ck_webhook_logs_status"),
        sa.CheckConstraint(
            "trigger_type IN ('event','manual')", name="ck_webhook_logs_trigger_type"
        ),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_webhook_logs_webhook_id_sent_at",
        "webhook_logs",
        ["webhook_id", "sent_at"],
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("webhook_logs", schema=SCHEMA)
    op.drop_table("webhook_deliveries", schema=SCHEMA)
    op.drop_table("webhook_configurations", schema=SCHEMA)
    drop_outbox_and_inbox(op.get_bind(), SCHEMA)
