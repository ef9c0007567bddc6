"""MLflow's metric log: mlflow_metrics (every value an MLflow client logged: several per step,
any 64-bit step, NaN and infinities) and mlflow_latest_metrics (per run and metric, the greatest
(step, timestamp, value)). training_runs keeps Runyard's one finite value per epoch; its
metric_times (0008) goes: the metric log holds every value's timestamp.

Revision ID: 0011
Revises: 0010
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "experiments"


def experiment_id() -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(
        "experiment_id",
        sa.Uuid(),
        sa.ForeignKey(f"{SCHEMA}.experiments.id", ondelete="CASCADE"),
        nullable=False,
    )


def upgrade() -> None:
    op.create_table(
        "mlflow_metrics",
        experiment_id(),
        sa.Column("key", sa.String(250), nullable=False),
        sa.Column("step", sa.BigInteger(), nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("experiment_id", "key", "step", "timestamp", "value"),
        schema=SCHEMA,
    )
    op.create_table(
        "mlflow_latest_metrics",
        experiment_id(),
        sa.Column("key", sa.String(250), nullable=False),
        sa.Column("step", sa.BigInteger(), nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("experiment_id", "key"),
        schema=SCHEMA,
    )
    op.drop_column("training_runs", "metric_times", schema=SCHEMA)


def downgrade() -> None:
    op.add_column(
        "training_runs",
        sa.Column(
            "metric_times",
            postgresql.JSONB(),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        schema=SCHEMA,
    )
    op.drop_table("mlflow_latest_metrics", schema=SCHEMA)
    op.drop_table("mlflow_metrics", schema=SCHEMA)
