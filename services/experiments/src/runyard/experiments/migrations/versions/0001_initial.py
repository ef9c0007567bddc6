"""experiments schema: experiments, outbox, inbox

Revision ID: 0001
Revises:
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from runyard.shared.migrations import create_outbox_and_inbox, drop_outbox_and_inbox

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "experiments"


def upgrade() -> None:
    create_outbox_and_inbox(op.get_bind(), SCHEMA)
    op.create_table(
        "experiments",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.Text()),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("model_type", sa.String(100)),
        sa.Column("dataset_id", sa.Uuid()),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("config", postgresql.JSONB(), nullable=False),
        sa.Column("hyperparameters", postgresql.JSONB(), nullable=False),
        sa.Column("metrics", postgresql.JSONB(), nullable=False),
        sa.Column("best_epoch", sa.Integer()),
        sa.Column("total_epochs", sa.Integer(), nullable=False),
        sa.Column("error_message", sa.Text()),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("ended_at", sa.DateTime(timezone=True)),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint(
            "status IN ('pending','running','paused','completed','failed','cancelled')",
            name="status",
        ),
        schema=SCHEMA,
    )
    op.create_index("ix_experiments_owner_id", "experiments", ["owner_id"], schema=SCHEMA)
    op.create_index("ix_experiments_status", "experiments", ["status"], schema=SCHEMA)


def downgrade() -> None:
    op.drop_table("experiments", schema=SCHEMA)
    drop_outbox_and_inbox(op.get_bind(), SCHEMA)
