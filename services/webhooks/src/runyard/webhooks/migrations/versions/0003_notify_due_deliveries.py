"""NOTIFY the delivery workers only when an insert adds deliveries due now

Fan-out inserts the deliveries it hands to its own process's worker leased (due after the
attempt lease): waking every worker to claim them would find nothing. The statement trigger
now looks at the inserted rows (a transition table) and notifies only if one is due.

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "webhooks"
DELIVERIES_CHANNEL = "runyard_webhooks_deliveries"


def _trigger(*, referencing: bool) -> None:
    op.execute(f"DROP TRIGGER IF EXISTS deliveries_notify ON {SCHEMA}.webhook_deliveries")
    op.execute(
        f"""CREATE TRIGGER deliveries_notify AFTER INSERT ON {SCHEMA}.webhook_deliveries
            {"REFERENCING NEW TABLE AS inserted" if referencing else ""}
            FOR EACH STATEMENT EXECUTE FUNCTION {SCHEMA}.deliveries_notify()"""
    )


def upgrade() -> None:
    op.execute(
        f"""CREATE OR REPLACE FUNCTION {SCHEMA}.deliveries_notify() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
              IF EXISTS (SELECT 1 FROM inserted WHERE next_attempt_at <= now()) THEN
                PERFORM pg_notify('{DELIVERIES_CHANNEL}', '');
              END IF;
              RETURN NULL;
            END $$"""  # noqa: S608 (this file's constants, no input)
    )
    _trigger(referencing=True)


def downgrade() -> None:
    op.execute(
        f"""CREATE OR REPLACE FUNCTION {SCHEMA}.deliveries_notify() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN PERFORM pg_notify('{DELIVERIES_CHANNEL}', ''); RETURN NULL; END $$"""
    )
    _trigger(referencing=False)
