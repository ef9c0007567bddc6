"""artifacts: the files of an MLflow logged model made outside a run

MLflow 3's ``mlflow.<flavor>.log_model`` with no active run creates a logged model without a
source run and uploads its files to ``<experiment_id>/models/<model_id>/artifacts/``. Until now a
logged model's files were artifacts of its source run only, so such an upload was refused. An
artifact's holder is now an experiment (``experiment_id``, as before) or a logged model
(``logged_model_id``), exactly one of the two; a model's paths are unique as an experiment's
are. Deleting the model's row (never done: a logged model's delete is soft) would delete its
files' rows.

Revision ID: 0020
Revises: 0019
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "experiments"


def upgrade() -> None:
    op.add_column(
        "artifacts", sa.Column("logged_model_id", sa.String(64), nullable=True), schema=SCHEMA
    )
    op.create_foreign_key(
        "fk_artifacts_logged_model_id_logged_models",
        "artifacts",
        "logged_models",
        ["logged_model_id"],
        ["id"],
        source_schema=SCHEMA,
        referent_schema=SCHEMA,
        ondelete="CASCADE",
    )
    op.alter_column("artifacts", "experiment_id", nullable=True, schema=SCHEMA)
    op.create_check_constraint(
        "ck_artifacts_one_holder",
        "artifacts",
        "num_nonnulls(experiment_id, logged_model_id) = 1",
        schema=SCHEMA,
    )
    op.create_index(
        "uq_artifacts_logged_model_id_path",
        "artifacts",
        ["logged_model_id", "path"],
        unique=True,
        schema=SCHEMA,
        postgresql_where=sa.text("logged_model_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.execute("DELETE FROM experiments.artifacts WHERE logged_model_id IS NOT NULL")
    op.drop_index("uq_artifacts_logged_model_id_path", "artifacts", schema=SCHEMA)
    op.drop_constraint("ck_artifacts_one_holder", "artifacts", type_="check", schema=SCHEMA)
    op.alter_column("artifacts", "experiment_id", nullable=False, schema=SCHEMA)
    op.drop_constraint(
        "fk_artifacts_logged_model_id_logged_models", "artifacts", type_="foreignkey", schema=SCHEMA
    )
    op.drop_column("artifacts", "logged_model_id", schema=SCHEMA)
