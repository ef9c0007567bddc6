"""the prediction log, partitioned by month

The partitions themselves (``predictions_YYYY_MM``) are not made here: the ``prediction-
partitions`` worker and the first insert into a month make them (``predictions/partitions.py``).

Revision ID: 0014
Revises: 0013
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "experiments"


def upgrade() -> None:
    op.execute(f"CREATE SEQUENCE {SCHEMA}.predictions_id_seq")
    op.create_table(
        "predictions",
        sa.Column("version_id", sa.Uuid(), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "id",
            sa.BigInteger(),
            server_default=sa.text(f"nextval('{SCHEMA}.predictions_id_seq')"),
            nullable=False,
        ),
        sa.Column("input", postgresql.JSONB(), nullable=True),
        sa.Column("output", postgresql.JSONB(), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("version_id", "time", "id", name="pk_predictions"),
        sa.CheckConstraint(
            "confidence >= 0 AND confidence <= 1", name="ck_predictions_confidence_range"
        ),
        sa.CheckConstraint("latency_ms >= 0", name="ck_predictions_latency_not_negative"),
        schema=SCHEMA,
        postgresql_partition_by="RANGE (time)",
    )
    op.execute(f"ALTER SEQUENCE {SCHEMA}.predictions_id_seq OWNED BY {SCHEMA}.predictions.id")
    op.create_table(
        "prediction_rollups",
        sa.Column("version_id", sa.Uuid(), nullable=False),
        sa.Column("grain", sa.SmallInteger(), nullable=False),
        sa.Column("start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.Column("errors", sa.BigInteger(), nullable=False),
        sa.Column("latency_sum", sa.Float(), nullable=False),
        sa.Column("confidence_null", sa.BigInteger(), nullable=False),
        sa.Column("confidence", postgresql.ARRAY(sa.BigInteger()), nullable=False),
        sa.Column("latency", postgresql.ARRAY(sa.BigInteger()), nullable=False),
        sa.PrimaryKeyConstraint("version_id", "grain", "start", name="pk_prediction_rollups"),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_prediction_rollups_hours",
        "prediction_rollups",
        ["start"],
        schema=SCHEMA,
        postgresql_where=sa.text("grain = 3600"),
    )
    op.create_table(
        "prediction_drift",
        sa.Column("version_id", sa.Uuid(), nullable=False),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("psi", sa.Float(), nullable=True),
        sa.Column("alerted_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("version_id", name="pk_prediction_drift"),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("prediction_drift", schema=SCHEMA)
    op.drop_table("prediction_rollups", schema=SCHEMA)
    # takes every partition (and the sequence it owns) with it
    op.drop_table("predictions", schema=SCHEMA)
