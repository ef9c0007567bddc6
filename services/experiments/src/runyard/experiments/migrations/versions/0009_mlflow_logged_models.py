"""MLflow 3 logged models: a model a run produced (or one registered without a run), with its
params, tags, metrics and status; its files are artifacts of its source run under
``models/<model id>/``

Revision ID: 0009
Revises: 0008
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "experiments"


def jsonb(name: str, default: str) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(
        name, postgresql.JSONB(), server_default=sa.text(f"'{default}'::jsonb"), nullable=False
    )


def upgrade() -> None:
    op.create_table(
        "logged_models",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("project_id", sa.Uuid(), nullable=True),
        sa.Column("source_run_id", sa.Uuid(), nullable=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("model_type", sa.String(255), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("status_message", sa.Text(), nullable=True),
        jsonb("params", "{}"),
        jsonb("tags", "{}"),
        jsonb("metrics", "[]"),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name="pk_logged_models"),
        sa.ForeignKeyConstraint(
            ["project_id"],
            [f"{SCHEMA}.projects.id"],
            name="fk_logged_models_project_id_projects",
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["source_run_id"],
            [f"{SCHEMA}.experiments.id"],
            name="fk_logged_models_source_run_id_experiments",
            ondelete="SET NULL",
        ),
        sa.CheckConstraint(
            "status IN ('PENDING', 'READY', 'UPLOAD_FAILED')", name="ck_logged_models_status"
        ),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_logged_models_owner_id_project_id_created_at",
        "logged_models",
        ["owner_id", "project_id", "created_at"],
        schema=SCHEMA,
    )
    op.create_index("ix_logged_models_project_id", "logged_models", ["project_id"], schema=SCHEMA)
    op.create_index(
        "ix_logged_models_source_run_id", "logged_models", ["source_run_id"], schema=SCHEMA
    )


def downgrade() -> None:
    op.drop_table("logged_models", schema=SCHEMA)
