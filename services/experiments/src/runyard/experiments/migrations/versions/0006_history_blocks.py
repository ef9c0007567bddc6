"""history_blocks: per-metric summaries of aligned blocks of epochs for the downsampled history

For each experiment, metric and block of 16 x 4**level epochs (level 0-4: 16 to 4,096 epochs):
the number of runs having the metric, its min and max, and the block's last epoch having it with
that value and time; metric '' counts every run of the block. Kept by the epoch write path
(``tracking.repository.history.record_runs``); filled here from the existing runs, level 0 from
``training_runs`` and each level above from the one below.

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "experiments"
#: the metrics training_runs has columns for (every other name is a number in ``metrics``)
RUN_COLUMNS = ("train_loss", "val_loss", "train_accuracy", "val_accuracy", "learning_rate")
BASE_SHIFT = 4
LEVEL_SHIFT = 2
LEVELS = 5
COLUMNS = "experiment_id, metric, level, block, n, min, max, last_epoch, last_value, last_at"


def upgrade() -> None:
    op.create_table(
        "history_blocks",
        sa.Column("experiment_id", sa.Uuid(), nullable=False),
        sa.Column("metric", sa.String(100), nullable=False),
        sa.Column("level", sa.SmallInteger(), nullable=False),
        sa.Column("block", sa.Integer(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("min", sa.Float(), nullable=True),
        sa.Column("max", sa.Float(), nullable=True),
        sa.Column("last_epoch", sa.Integer(), nullable=False),
        sa.Column("last_value", sa.Float(), nullable=True),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            [f"{SCHEMA}.experiments.id"],
            name="fk_history_blocks_experiment_id_experiments",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "experiment_id", "metric", "level", "block", name="pk_history_blocks"
        ),
        schema=SCHEMA,
    )
    columns = "".join(
        f" UNION ALL SELECT '{c}', r.{c} WHERE r.{c} IS NOT NULL" for c in RUN_COLUMNS
    )
    named = ", ".join(f"'{c}'" for c in RUN_COLUMNS)
    op.execute(
        f"""INSERT INTO {SCHEMA}.history_blocks ({COLUMNS})
            SELECT r.experiment_id, v.metric, 0, r.epoch >> {BASE_SHIFT}, count(*),
                   min(v.value), max(v.value), max(r.epoch),
                   (array_agg(v.value ORDER BY r.epoch DESC))[1],
                   (array_agg(r.created_at ORDER BY r.epoch DESC))[1]
            FROM {SCHEMA}.training_runs AS r
            CROSS JOIN LATERAL (
                SELECT '' AS metric, NULL::float8 AS value {columns}
                UNION ALL SELECT k.key, {SCHEMA}.jsonb_number(r.metrics, k.key)
                  FROM jsonb_each(r.metrics) AS k
                  WHERE jsonb_typeof(k.value) = 'number' AND k.key NOT IN ('', {named})
            ) AS v
            GROUP BY r.experiment_id, v.metric, r.epoch >> {BASE_SHIFT}"""  # noqa: S608
    )
    for level in range(1, LEVELS):
        op.execute(
            f"""INSERT INTO {SCHEMA}.history_blocks ({COLUMNS})
                SELECT experiment_id, metric, {level}, block >> {LEVEL_SHIFT}, sum(n),
                       min(min), max(max), max(last_epoch),
                       (array_agg(last_value ORDER BY last_epoch DESC))[1],
                       (array_agg(last_at ORDER BY last_epoch DESC))[1]
                FROM {SCHEMA}.history_blocks WHERE level = {level - 1}
                GROUP BY experiment_id, metric, block >> {LEVEL_SHIFT}"""  # noqa: S608
        )


def downgrade() -> None:
    op.drop_table("history_blocks", schema=SCHEMA)
