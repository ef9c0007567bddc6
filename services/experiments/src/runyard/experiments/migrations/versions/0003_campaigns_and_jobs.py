"""campaigns and jobs: HPO campaigns and their trials, NAS campaigns and trials, explanations,
dataset generation and import jobs

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "experiments"


def _timestamps() -> list[sa.Column]:  # type: ignore[type-arg]
    return [
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
    ]


def _fk(table: str, ondelete: str | None = None) -> sa.ForeignKey:
    return sa.ForeignKey(f"{SCHEMA}.{table}.id", ondelete=ondelete)


def _job_columns() -> list[sa.Column]:  # type: ignore[type-arg]
    ts = sa.DateTime(timezone=True)
    return [
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("config", postgresql.JSONB(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("num_signals", sa.Integer(), nullable=False),
        sa.Column("output_path", sa.String(1024)),
        sa.Column("progress", sa.Integer(), nullable=False),
        sa.Column("items_done", sa.Integer(), nullable=False),
        sa.Column("celery_task_id", sa.String(255)),
        sa.Column("locked_until", ts),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("dataset_id", sa.Uuid(), _fk("datasets", "SET NULL")),
        sa.Column("error_message", sa.Text()),
        sa.Column("errors", postgresql.JSONB(), nullable=False),
        sa.Column("started_at", ts),
        sa.Column("ended_at", ts),
        sa.Column("duration_seconds", sa.Float()),
        *_timestamps(),
    ]


def upgrade() -> None:
    ts = sa.DateTime(timezone=True)
    op.create_table(
        "hpo_campaigns",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.Text()),
        sa.Column("method", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("base_model_type", sa.String(100)),
        sa.Column("dataset_id", sa.Uuid(), _fk("datasets", "SET NULL")),
        sa.Column("search_space", postgresql.JSONB(), nullable=False),
        sa.Column("budget", postgresql.JSONB(), nullable=False),
        sa.Column("base_hyperparameters", postgresql.JSONB(), nullable=False),
        sa.Column("metric", sa.String(100), nullable=False),
        sa.Column("direction", sa.String(8), nullable=False),
        sa.Column("pruner", sa.String(20), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("trials_started", sa.Integer(), nullable=False),
        sa.Column("trials_completed", sa.Integer(), nullable=False),
        sa.Column("trials_total", sa.Integer(), nullable=False),
        sa.Column("best_experiment_id", sa.Uuid(), _fk("experiments", "SET NULL")),
        sa.Column("best_value", sa.Float()),
        sa.Column("best_accuracy", sa.Float()),
        sa.Column("best_params", postgresql.JSONB()),
        sa.Column("completion_reason", sa.String(30)),
        sa.Column("started_at", ts),
        sa.Column("ended_at", ts),
        sa.Column("version", sa.Integer(), nullable=False),
        *_timestamps(),
        sa.UniqueConstraint("owner_id", "name", name="uq_hpo_campaigns_owner_id_name"),
        sa.CheckConstraint("trials_started <= trials_total", name="trials_within_budget"),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_hpo_campaigns_owner_id_created_at",
        "hpo_campaigns",
        ["owner_id", "created_at"],
        schema=SCHEMA,
    )
    op.create_index(
        "ix_hpo_campaigns_running",
        "hpo_campaigns",
        ["status"],
        schema=SCHEMA,
        postgresql_where=sa.text("status = 'running'"),
    )
    op.create_table(
        "hpo_trials",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("campaign_id", sa.Uuid(), _fk("hpo_campaigns", "CASCADE"), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("experiment_id", sa.Uuid(), nullable=False),
        sa.Column("params", postgresql.JSONB(), nullable=False),
        sa.Column("system_attrs", postgresql.JSONB(), nullable=False),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("value", sa.Float()),
        sa.Column("pruned_at_step", sa.Integer()),
        sa.Column("finished_at", ts),
        *_timestamps(),
        sa.UniqueConstraint("campaign_id", "number", name="uq_hpo_trials_campaign_id_number"),
        sa.UniqueConstraint("experiment_id", name="uq_hpo_trials_experiment_id"),
        schema=SCHEMA,
    )
    op.create_table(
        "nas_campaigns",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.Text()),
        sa.Column("dataset_id", sa.Uuid(), _fk("datasets", "SET NULL")),
        sa.Column("search_algorithm", sa.String(50), nullable=False),
        sa.Column("num_trials", sa.Integer(), nullable=False),
        sa.Column("max_epochs_per_trial", sa.Integer()),
        sa.Column("search_space_config", postgresql.JSONB(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("trials_completed", sa.Integer(), nullable=False),
        sa.Column("best_trial_id", sa.Uuid()),
        sa.Column("best_accuracy", sa.Float()),
        sa.Column("task_id", sa.String(255)),
        sa.Column("error_message", sa.Text()),
        sa.Column("ended_at", ts),
        sa.Column("version", sa.Integer(), nullable=False),
        *_timestamps(),
        sa.UniqueConstraint("owner_id", "name", name="uq_nas_campaigns_owner_id_name"),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_nas_campaigns_owner_id_created_at",
        "nas_campaigns",
        ["owner_id", "created_at"],
        schema=SCHEMA,
    )
    op.create_table(
        "nas_trials",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("campaign_id", sa.Uuid(), _fk("nas_campaigns", "CASCADE"), nullable=False),
        sa.Column("trial_number", sa.Integer(), nullable=False),
        sa.Column("architecture", postgresql.JSONB(), nullable=False),
        sa.Column("architecture_hash", sa.String(64), nullable=False),
        sa.Column("validation_accuracy", sa.Float()),
        sa.Column("validation_loss", sa.Float()),
        sa.Column("training_time", sa.Float()),
        sa.Column("num_parameters", sa.BigInteger()),
        sa.Column("flops", sa.BigInteger()),
        sa.Column("model_size_mb", sa.Float()),
        sa.Column("metrics", postgresql.JSONB(), nullable=False),
        *_timestamps(),
        sa.UniqueConstraint(
            "campaign_id", "trial_number", name="uq_nas_trials_campaign_id_trial_number"
        ),
        sa.UniqueConstraint(
            "campaign_id", "architecture_hash", name="uq_nas_trials_campaign_id_architecture_hash"
        ),
        schema=SCHEMA,
    )
    op.create_table(
        "explanations",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("experiment_id", sa.Uuid(), _fk("experiments", "CASCADE"), nullable=False),
        sa.Column("signal_id", sa.String(255)),
        sa.Column("method", sa.String(50), nullable=False),
        sa.Column("explanation_data", postgresql.JSONB(), nullable=False),
        sa.Column("file_path", sa.String(1024)),
        *_timestamps(),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_explanations_experiment_id_created_at",
        "explanations",
        ["experiment_id", "created_at"],
        schema=SCHEMA,
    )
    op.create_table(
        "dataset_generations",
        *_job_columns(),
        sa.Column("num_faults", sa.Integer(), nullable=False),
        schema=SCHEMA,
    )
    op.create_table(
        "dataset_imports",
        *_job_columns(),
        sa.Column("num_files", sa.Integer(), nullable=False),
        schema=SCHEMA,
    )
    for table in ("dataset_generations", "dataset_imports"):
        op.create_index(f"ix_{table}_status", table, ["status"], schema=SCHEMA)
        op.create_index(
            f"ix_{table}_owner_id_created_at", table, ["owner_id", "created_at"], schema=SCHEMA
        )


def downgrade() -> None:
    for table in (
        "dataset_imports",
        "dataset_generations",
        "explanations",
        "nas_trials",
        "nas_campaigns",
        "hpo_trials",
        "hpo_campaigns",
    ):
        op.drop_table(table, schema=SCHEMA)
