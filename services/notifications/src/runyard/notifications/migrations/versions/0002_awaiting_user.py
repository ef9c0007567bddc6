"""email_logs: park emails for users not yet known (awaiting_user), skipped emails

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

SCHEMA = "notifications"
UNRENDERED = ("to_address", sa.String(320)), ("subject", sa.String(500)), ("body_text", sa.Text())


# 0001 names its status CHECK "ck_email_logs_status" without op.f(), so the naming convention
# makes it "ck_email_logs_ck_email_logs_status": the same unmarked name finds it again here.
# The constraints created here are named exactly (op.f).


def upgrade() -> None:
    for name, type_ in UNRENDERED:
        op.alter_column("email_logs", name, existing_type=type_, nullable=True, schema=SCHEMA)
    op.drop_constraint("ck_email_logs_status", "email_logs", type_="check", schema=SCHEMA)
    op.create_check_constraint(
        op.f("ck_email_logs_status"),
        "email_logs",
        "status IN ('awaiting_user','queued','sending','sent','failed','skipped')",
        schema=SCHEMA,
    )
    op.create_check_constraint(
        op.f("ck_email_logs_rendered"),
        "email_logs",
        "status IN ('awaiting_user','skipped')"
        " OR (to_address IS NOT NULL AND subject IS NOT NULL AND body_text IS NOT NULL)",
        schema=SCHEMA,
    )


def downgrade() -> None:
    # Parked and skipped emails were never rendered: 0001 has no room for them.
    op.execute("DELETE FROM notifications.email_logs WHERE status IN ('awaiting_user','skipped')")
    op.drop_constraint(op.f("ck_email_logs_rendered"), "email_logs", type_="check", schema=SCHEMA)
    op.drop_constraint(op.f("ck_email_logs_status"), "email_logs", type_="check", schema=SCHEMA)
    op.create_check_constraint(
        "ck_email_logs_status",  # named as 0001 names it
        "email_logs",
        "status IN ('queued','sending','sent','failed')",
        schema=SCHEMA,
    )
    for name, type_ in UNRENDERED:
        op.alter_column("email_logs", name, existing_type=type_, nullable=False, schema=SCHEMA)
