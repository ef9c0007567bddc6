"""what MLflow's tracking API keeps of a run beyond Runyard's own fields: key/value tags
(experiments.kv_tags, MLflow's ``mlflow.*`` system tags included), soft delete
(experiments.deleted_at: an MLflow run deleted and restorable), dataset and model inputs and
outputs (experiments.inputs, experiments.outputs), and the timestamp each metric value was logged
with (training_runs.metric_times: metric name -> milliseconds since the epoch)

Revision ID: 0008
Revises: 0007
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "experiments"


def jsonb(name: str, default: str) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(
        name, postgresql.JSONB(), server_default=sa.text(f"'{default}'::jsonb"), nullable=False
    )


def upgrade() -> None:
    op.add_column("experiments", jsonb("kv_tags", "{}"), schema=SCHEMA)
    op.add_column("experiments", jsonb("inputs", "[]"), schema=SCHEMA)
    op.add_column("experiments", jsonb("outputs", "[]"), schema=SCHEMA)
    op.add_column(
        "experiments",
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        schema=SCHEMA,
    )
    op.add_column("training_runs", jsonb("metric_times", "{}"), schema=SCHEMA)


def downgrade() -> None:
    op.drop_column("training_runs", "metric_times", schema=SCHEMA)
    for column in ("deleted_at", "outputs", "inputs", "kv_tags"):
        op.drop_column("experiments", column, schema=SCHEMA)
