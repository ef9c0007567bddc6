"""pending_epochs: epochs logged whose experiment.epochs_logged event is not written yet (the
requests of a short window become one event)

Revision ID: 0012
Revises: 0011
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "experiments"


def upgrade() -> None:
    op.create_table(
        "pending_epochs",
        sa.Column(
            "experiment_id",
            sa.Uuid(),
            sa.ForeignKey(f"{SCHEMA}.experiments.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("first_epoch", sa.Integer(), nullable=False),
        sa.Column("last_epoch", sa.Integer(), nullable=False),
        sa.Column("epochs_written", sa.Integer(), nullable=False),
        sa.Column("epochs_inserted", sa.Integer(), nullable=False),
        sa.Column("latest_metrics", postgresql.JSONB(), nullable=False),
        sa.Column("first_logged_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("logged_at", sa.DateTime(timezone=True), nullable=False),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("pending_epochs", schema=SCHEMA)
