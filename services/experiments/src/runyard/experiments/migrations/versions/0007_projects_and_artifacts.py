"""projects and artifacts: projects (soft-deletable groups of experiments), experiments.project_id,
artifacts (files of experiments: metadata here, bytes in the artifact store) and artifact_blobs
(one row per stored content, by SHA-256)

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | None = "0006"
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


def upgrade() -> None:
    op.create_table(
        "projects",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("tags", postgresql.JSONB(), nullable=False),
        sa.Column("lifecycle_stage", sa.String(10), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        *timestamps(),
        sa.PrimaryKeyConstraint("id", name="pk_projects"),
        sa.UniqueConstraint("owner_id", "name", name="uq_projects_owner_id_name"),
        sa.CheckConstraint(
            "lifecycle_stage IN ('active', 'deleted')", name="ck_projects_lifecycle_stage"
        ),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_projects_owner_id_created_at_id",
        "projects",
        ["owner_id", "created_at", "id"],
        schema=SCHEMA,
    )
    op.add_column("experiments", sa.Column("project_id", sa.Uuid(), nullable=True), schema=SCHEMA)
    op.create_foreign_key(
        "fk_experiments_project_id_projects",
        "experiments",
        "projects",
        ["project_id"],
        ["id"],
        source_schema=SCHEMA,
        referent_schema=SCHEMA,
        ondelete="SET NULL",
    )
    op.create_index("ix_experiments_project_id", "experiments", ["project_id"], schema=SCHEMA)

    op.create_table(
        "artifact_blobs",
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("sha256", name="pk_artifact_blobs"),
        schema=SCHEMA,
    )
    op.create_table(
        "artifacts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("experiment_id", sa.Uuid(), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("path", sa.String(1024), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("content_type", sa.String(255), nullable=False),
        *timestamps(),
        sa.PrimaryKeyConstraint("id", name="pk_artifacts"),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            [f"{SCHEMA}.experiments.id"],
            name="fk_artifacts_experiment_id_experiments",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("experiment_id", "path", name="uq_artifacts_experiment_id_path"),
        sa.CheckConstraint("size >= 0", name="ck_artifacts_size_not_negative"),
        schema=SCHEMA,
    )
    op.create_index("ix_artifacts_owner_id", "artifacts", ["owner_id"], schema=SCHEMA)
    op.create_index("ix_artifacts_sha256", "artifacts", ["sha256"], schema=SCHEMA)


def downgrade() -> None:
    op.drop_table("artifacts", schema=SCHEMA)
    op.drop_table("artifact_blobs", schema=SCHEMA)
    op.drop_index("ix_experiments_project_id", table_name="experiments", schema=SCHEMA)
    op.drop_constraint(
        "fk_experiments_project_id_projects", "experiments", schema=SCHEMA, type_="foreignkey"
    )
    op.drop_column("experiments", "project_id", schema=SCHEMA)
    op.drop_index("ix_projects_owner_id_created_at_id", table_name="projects", schema=SCHEMA)
    op.drop_table("projects", schema=SCHEMA)
