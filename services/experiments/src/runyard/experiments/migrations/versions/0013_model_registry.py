"""registry: registered models, versions, aliases, tags

Revision ID: 0013
Revises: 0012
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "experiments"


def timestamps() -> list[sa.Column]:  # type: ignore[type-arg]
    return [
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
    ]


def tags() -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(
        "tags", postgresql.JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False
    )


def upgrade() -> None:
    op.create_table(
        "registered_models",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        tags(),
        sa.Column("last_version", sa.Integer(), server_default="0", nullable=False),
        *timestamps(),
        sa.PrimaryKeyConstraint("id", name="pk_registered_models"),
        sa.UniqueConstraint("owner_id", "name", name="uq_registered_models_owner_id_name"),
        sa.CheckConstraint(
            "last_version >= 0", name="ck_registered_models_last_version_not_negative"
        ),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_registered_models_owner_id_created_at_id",
        "registered_models",
        ["owner_id", "created_at", "id"],
        schema=SCHEMA,
    )
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("model_id", sa.Uuid(), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        tags(),
        sa.Column("experiment_id", sa.Uuid(), nullable=True),
        sa.Column("artifact_path", sa.String(1024), nullable=False),
        sa.Column("source", sa.String(2048), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("sha256", sa.String(64), nullable=True),
        sa.Column("file_count", sa.Integer(), nullable=True),
        sa.Column("input_schema", postgresql.JSONB(), nullable=True),
        sa.Column("output_schema", postgresql.JSONB(), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("status_message", sa.Text(), nullable=True),
        sa.Column("metric_name", sa.String(100), nullable=True),
        sa.Column("metric_value", sa.Float(), nullable=True),
        sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True),
        *timestamps(),
        sa.PrimaryKeyConstraint("id", name="pk_model_versions"),
        sa.ForeignKeyConstraint(
            ["model_id"],
            [f"{SCHEMA}.registered_models.id"],
            name="fk_model_versions_model_id_registered_models",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            [f"{SCHEMA}.experiments.id"],
            name="fk_model_versions_experiment_id_experiments",
            ondelete="SET NULL",
        ),
        sa.UniqueConstraint("model_id", "version", name="uq_model_versions_model_id_version"),
        sa.CheckConstraint(
            "status IN ('pending', 'ready', 'failed')", name="ck_model_versions_status"
        ),
        sa.CheckConstraint("version > 0", name="ck_model_versions_version_positive"),
        schema=SCHEMA,
    )
    op.create_index("ix_model_versions_owner_id", "model_versions", ["owner_id"], schema=SCHEMA)
    op.create_index(
        "ix_model_versions_experiment_id", "model_versions", ["experiment_id"], schema=SCHEMA
    )
    op.create_table(
        "model_aliases",
        sa.Column("model_id", sa.Uuid(), nullable=False),
        sa.Column("alias", sa.String(255), nullable=False),
        sa.Column("version_id", sa.Uuid(), nullable=False),
        *timestamps(),
        sa.PrimaryKeyConstraint("model_id", "alias", name="pk_model_aliases"),
        sa.ForeignKeyConstraint(
            ["model_id"],
            [f"{SCHEMA}.registered_models.id"],
            name="fk_model_aliases_model_id_registered_models",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["version_id"],
            [f"{SCHEMA}.model_versions.id"],
            name="fk_model_aliases_version_id_model_versions",
        ),
        schema=SCHEMA,
    )
    op.create_index("ix_model_aliases_version_id", "model_aliases", ["version_id"], schema=SCHEMA)


def downgrade() -> None:
    op.drop_table("model_aliases", schema=SCHEMA)
    op.drop_table("model_versions", schema=SCHEMA)
    op.drop_table("registered_models", schema=SCHEMA)
