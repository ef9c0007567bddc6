"""model_versions: a version made from the files of an MLflow logged model made outside a run

Since 0020 a logged model made outside a run holds its own files. ``mlflow.register_model
("models:/<model_id>", ...)`` and ``log_model(..., registered_model_name=...)`` with no active run
register such a model: the version's files are then the model's (``logged_model_id``), not an
experiment's artifact (``experiment_id`` stays null). The model's row is never deleted (a
logged model's delete is soft); were it, the version would keep its recorded size and hash.

Revision ID: 0021
Revises: 0020
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "experiments"


def upgrade() -> None:
    op.add_column(
        "model_versions",
        sa.Column("logged_model_id", sa.String(64), nullable=True),
        schema=SCHEMA,
    )
    op.create_foreign_key(
        "fk_model_versions_logged_model_id_logged_models",
        "model_versions",
        "logged_models",
        ["logged_model_id"],
        ["id"],
        source_schema=SCHEMA,
        referent_schema=SCHEMA,
        ondelete="SET NULL",
    )
    op.create_index(
        "ix_model_versions_logged_model_id", "model_versions", ["logged_model_id"], schema=SCHEMA
    )


def downgrade() -> None:
    op.drop_index("ix_model_versions_logged_model_id", "model_versions", schema=SCHEMA)
    op.drop_constraint(
        "fk_model_versions_logged_model_id_logged_models",
        "model_versions",
        type_="foreignkey",
        schema=SCHEMA,
    )
    op.drop_column("model_versions", "logged_model_id", schema=SCHEMA)
