"""notification preferences, digest queue, in-app inbox, alert throttles, unsubscribe links

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "notifications"


def _timestamp(name: str) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False)


def upgrade() -> None:
    op.add_column("email_logs", sa.Column("unsubscribe_url", sa.Text()), schema=SCHEMA)
    op.create_table(
        "notification_preferences",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("event_type", sa.String(100), nullable=False),
        sa.Column("email_enabled", sa.Boolean(), nullable=False),
        sa.Column("in_app_enabled", sa.Boolean(), nullable=False),
        sa.Column("slack_enabled", sa.Boolean(), nullable=False),
        sa.Column("webhook_enabled", sa.Boolean(), nullable=False),
        sa.Column("email_frequency", sa.String(20), nullable=False),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_preferences")),
        sa.UniqueConstraint(
            "user_id", "event_type", name=op.f("uq_notification_preferences_user_id_event_type")
        ),
        sa.CheckConstraint(
            "email_frequency IN ('immediate','hourly','daily','weekly','never')",
            name=op.f("ck_notification_preferences_email_frequency"),
        ),
        schema=SCHEMA,
    )
    op.create_table(
        "email_digest_queue",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("event_type", sa.String(100), nullable=False),
        sa.Column("event_id", sa.String(255), nullable=False),
        sa.Column("event_data", postgresql.JSONB(), nullable=False),
        sa.Column("title", sa.String(500), nullable=False),
        sa.Column("frequency", sa.String(20), nullable=False),
        sa.Column("scheduled_for", sa.DateTime(timezone=True), nullable=False),
        sa.Column("included_in_digest", sa.Boolean(), nullable=False),
        sa.Column("digest_email_id", sa.Uuid()),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_email_digest_queue")),
        sa.UniqueConstraint(
            "user_id", "event_id", name=op.f("uq_email_digest_queue_user_id_event_id")
        ),
        sa.CheckConstraint(
            "frequency IN ('hourly','daily','weekly')", name=op.f("ck_email_digest_queue_frequency")
        ),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_email_digest_queue_due",
        "email_digest_queue",
        ["scheduled_for", "user_id"],
        schema=SCHEMA,
        postgresql_where=sa.text("NOT included_in_digest"),
    )
    op.create_table(
        "in_app_notifications",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("event_type", sa.String(100), nullable=False),
        sa.Column("event_id", sa.String(255), nullable=False),
        sa.Column("title", sa.String(500), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("data", postgresql.JSONB(), nullable=False),
        sa.Column("read_at", sa.DateTime(timezone=True)),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_in_app_notifications")),
        sa.UniqueConstraint(
            "user_id", "event_id", name=op.f("uq_in_app_notifications_user_id_event_id")
        ),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_in_app_notifications_user_id_created_at_id",
        "in_app_notifications",
        ["user_id", "created_at", "id"],
        schema=SCHEMA,
    )
    op.create_index(
        "ix_in_app_notifications_unread",
        "in_app_notifications",
        ["user_id"],
        schema=SCHEMA,
        postgresql_where=sa.text("read_at IS NULL"),
    )
    op.create_table(
        "alert_throttles",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("event_type", sa.String(100), nullable=False),
        sa.Column("window_started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("suppressed_count", sa.Integer(), nullable=False),
        sa.Column("summary_email_id", sa.Uuid()),
        _timestamp("updated_at"),
        sa.PrimaryKeyConstraint("user_id", "event_type", name=op.f("pk_alert_throttles")),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("alert_throttles", schema=SCHEMA)
    op.drop_table("in_app_notifications", schema=SCHEMA)
    op.drop_table("email_digest_queue", schema=SCHEMA)
    op.drop_table("notification_preferences", schema=SCHEMA)
    op.drop_column("email_logs", "unsubscribe_url", schema=SCHEMA)
