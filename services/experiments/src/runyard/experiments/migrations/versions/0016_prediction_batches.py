"""the batch ids of the prediction log (``Idempotency-Key``): one row per stored batch

Revision ID: 0016
Revises: 0015
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "experiments"


def upgrade() -> None:
    op.create_table(
        "prediction_batches",
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("version_id", sa.Uuid(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("body_sha256", sa.LargeBinary(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("owner_id", "key", name="pk_prediction_batches"),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_prediction_batches_created_at", "prediction_batches", ["created_at"], schema=SCHEMA
    )


def downgrade() -> None:
    op.drop_table("prediction_batches", schema=SCHEMA)
