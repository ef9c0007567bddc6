"""secret rotation, disabling, rate limits, trigger types, preference read model

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "webhooks"
#: The delivery worker LISTENs here and wakes at once when fan-out commits new deliveries.
DELIVERIES_CHANNEL = "runyard_webhooks_deliveries"


def _ts(name: str) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True))


def _drop_trigger_type_check() -> None:
    """0001 named it through the naming convention twice; drop it whatever its name."""
    op.execute(
        """DO $$ DECLARE c text; BEGIN
          FOR c IN SELECT conname FROM pg_constraint
                   WHERE conrelid = 'webhooks.webhook_logs'::regclass AND contype = 'c'
                     AND pg_get_constraintdef(oid) LIKE '%trigger_type%' LOOP
            EXECUTE format('ALTER TABLE webhooks.webhook_logs DROP CONSTRAINT %I', c);
          END LOOP;
        END $$"""
    )


def upgrade() -> None:
    for column in (
        _ts("failing_since"),
        sa.Column("previous_secret_encrypted", sa.Text()),
        _ts("previous_secret_expires_at"),
        _ts("disabled_at"),
        sa.Column("disabled_reason", sa.Text()),
        _ts("next_send_at"),
    ):
        op.add_column("webhook_configurations", column, schema=SCHEMA)

    for column in (
        sa.Column("last_error", sa.Text()),
        _ts("last_attempt_at"),
        sa.Column("trigger_type", sa.String(20), server_default="event", nullable=False),
        sa.Column(
            "automatic_retries", sa.Boolean(), server_default=sa.text("true"), nullable=False
        ),
    ):
        op.add_column("webhook_deliveries", column, schema=SCHEMA)
    op.create_check_constraint(
        op.f("ck_webhook_deliveries_trigger_type"),
        "webhook_deliveries",
        "trigger_type IN ('event','manual_retry','replay')",
        schema=SCHEMA,
    )
    op.create_index(
        op.f("ix_webhook_deliveries_webhook_id_created_at"),
        "webhook_deliveries",
        ["webhook_id", "created_at"],
        schema=SCHEMA,
    )

    op.add_column("webhook_logs", _ts("next_attempt_at"), schema=SCHEMA)
    op.execute(
        "UPDATE webhooks.webhook_logs SET trigger_type = 'manual_retry' "
        "WHERE trigger_type = 'manual'"
    )
    _drop_trigger_type_check()
    op.create_check_constraint(
        op.f("ck_webhook_logs_trigger_type"),
        "webhook_logs",
        "trigger_type IN ('event','test','manual_retry','replay')",
        schema=SCHEMA,
    )
    op.create_index(
        op.f("ix_webhook_logs_delivery_id"), "webhook_logs", ["delivery_id"], schema=SCHEMA
    )

    op.execute(
        f"""CREATE FUNCTION {SCHEMA}.deliveries_notify() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN PERFORM pg_notify('{DELIVERIES_CHANNEL}', ''); RETURN NULL; END $$"""
    )
    op.execute(
        f"""CREATE TRIGGER deliveries_notify AFTER INSERT ON {SCHEMA}.webhook_deliveries
            FOR EACH STATEMENT EXECUTE FUNCTION {SCHEMA}.deliveries_notify()"""
    )

    op.create_table(
        "notification_preferences",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("event_type", sa.String(100), nullable=False),
        sa.Column("webhook_enabled", sa.Boolean(), nullable=False),
        sa.Column("slack_enabled", sa.Boolean(), nullable=False),
        sa.Column("event_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("user_id", "event_type", name=op.f("pk_notification_preferences")),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("notification_preferences", schema=SCHEMA)
    op.execute(f"DROP TRIGGER IF EXISTS deliveries_notify ON {SCHEMA}.webhook_deliveries")
    op.execute(f"DROP FUNCTION IF EXISTS {SCHEMA}.deliveries_notify()")
    op.drop_index(op.f("ix_webhook_logs_delivery_id"), "webhook_logs", schema=SCHEMA)
    _drop_trigger_type_check()
    op.execute(
        "UPDATE webhooks.webhook_logs SET trigger_type = 'manual' WHERE trigger_type <> 'event'"
    )
    op.create_check_constraint(
        op.f("ck_webhook_logs_trigger_type"),
        "webhook_logs",
        "trigger_type IN ('event','manual')",
        schema=SCHEMA,
    )
    op.drop_column("webhook_logs", "next_attempt_at", schema=SCHEMA)
    op.drop_index(
        op.f("ix_webhook_deliveries_webhook_id_created_at"), "webhook_deliveries", schema=SCHEMA
    )
    op.drop_constraint(
        op.f("ck_webhook_deliveries_trigger_type"), "webhook_deliveries", schema=SCHEMA
    )
    for column in ("automatic_retries", "trigger_type", "last_attempt_at", "last_error"):
        op.drop_column("webhook_deliveries", column, schema=SCHEMA)
    for column in (
        "next_send_at",
        "disabled_reason",
        "disabled_at",
        "previous_secret_expires_at",
        "previous_secret_encrypted",
        "failing_since",
    ):
        op.drop_column("webhook_configurations", column, schema=SCHEMA)
