"""indexes of MLflow's search-runs: the runs of an MLflow experiment in MLflow's default order
(start_time DESC, missing start times last, then run id), for the virtual Default experiment (an
owner's experiments without a project) and for a project; and MLflow tags (experiments.kv_tags)
for ``tags.x = 'v'`` filters

Measured on 100,000 runs of one owner (bench/mlflow_search_bench.py): without them every search
reads the whole table (a parallel sequential scan and a sort, 150-250 ms on 2 cores); with them
the first 1,000 runs of an unfiltered or moderately selective search are an ordered index walk.

Revision ID: 0010
Revises: 0009
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "experiments"

INDEXES = {
    "ix_experiments_mlflow_default_order": (
        "(owner_id, started_at DESC NULLS LAST, id) WHERE project_id IS NULL"
    ),
    "ix_experiments_mlflow_project_order": (
        "(project_id, started_at DESC NULLS LAST, id) WHERE project_id IS NOT NULL"
    ),
    "ix_experiments_kv_tags": "USING gin (kv_tags jsonb_path_ops)",
}


def upgrade() -> None:
    for name, definition in INDEXES.items():
        op.execute(f"CREATE INDEX {name} ON {SCHEMA}.experiments {definition}")


def downgrade() -> None:
    for name in INDEXES:
        op.execute(f"DROP INDEX {SCHEMA}.{name}")
