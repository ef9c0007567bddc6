"""The Alembic history creates exactly what the models declare, and goes down and up again."""

from __future__ import annotations

from runyard.experiments.models import Base
from runyard.experiments.registry import models as _registry_models  # noqa: F401  (its tables)
from runyard.shared.testing.migrations import model_differences, round_trip

# Indexes the migrations make that the models do not declare (expression, GIN and composite
# search indexes: migration 0002 is their definition).
MIGRATION_ONLY_INDEXES = {
    "ix_datasets_created_at",
    "ix_datasets_owner_id_created_at",
    "ix_experiments_created_at_id",
    "ix_experiments_dataset_id",
    "ix_experiments_hyperparameters",
    "ix_experiments_metrics",
    "ix_experiments_model_type",
    "ix_experiments_owner_id_created_at_id",
    "ix_experiments_owner_id_metric_val_accuracy",
    "ix_experiments_metric_val_accuracy",
    "ix_experiments_metric_val_loss",
    "ix_experiments_name_pattern",
    "ix_experiments_owner_id_metric_val_loss",
    "ix_experiments_owner_id_model_type",
    "ix_experiments_owner_id_status_created_at",
    "ix_experiments_search_vector",
    "ix_experiments_tags",
    "ix_tags_slug",
    "ix_hpo_campaigns_owner_id_created_at",
    "ix_hpo_campaigns_running",
    "ix_nas_campaigns_owner_id_created_at",
    "ix_dataset_generations_owner_id_created_at",
    "ix_dataset_imports_owner_id_created_at",
    "ix_experiments_mlflow_default_order",
    "ix_experiments_mlflow_project_order",
    "ix_experiments_kv_tags",
}


async def test_migrations_match_the_models(db) -> None:
    assert (
        await model_differences(db, Base.metadata, migration_only_indexes=MIGRATION_ONLY_INDEXES)
        == []
    )


async def test_migration_0002_downgrades_and_upgrades_again(db) -> None:
    await round_trip("runyard.experiments", db, down_to="0001")


async def test_migrations_0020_and_0021_downgrade_and_upgrade_again(db) -> None:
    await round_trip("runyard.experiments", db, down_to="0019")
