from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection

from runyard.experiments.models import SCHEMA, Base
from runyard.shared.db import create_engine

# outbox/inbox come from the shared helper and are checked there.
OWN_TABLES = {
    "users",
    "datasets",
    "signals",
    "experiments",
    "training_runs",
    "tags",
    "experiment_tags",
    "saved_searches",
    "hpo_campaigns",
    "hpo_trials",
    "nas_campaigns",
    "nas_trials",
    "explanations",
    "dataset_generations",
    "dataset_imports",
}
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
}


def owned(obj: Any, name: str | None, type_: str, reflected: bool, _compare_to: Any) -> bool:
    if type_ == "index" and reflected and name in MIGRATION_ONLY_INDEXES:
        return False
    table = obj if type_ == "table" else getattr(obj, "table", None)
    return table is None or table.name in OWN_TABLES


async def test_migrations_match_the_models(db) -> None:
    def diff(connection: Connection) -> list[object]:
        context = MigrationContext.configure(
            connection,
            opts={
                "include_schemas": True,
                "include_name": lambda name, type_, _parent: type_ != "schema" or name == SCHEMA,
                "include_object": owned,
            },
        )
        return list(compare_metadata(context, Base.metadata))

    # As the admin: with the service role, ``experiments`` is the default schema and
    # autogenerate would compare it as schema None.
    engine = create_engine(db.admin_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            assert await conn.run_sync(diff) == []
    finally:
        await engine.dispose()


async def test_migration_0002_downgrades_and_upgrades_again(db) -> None:
    import asyncio

    from alembic import command

    from runyard.shared.migrations import alembic_config

    config = alembic_config("runyard.experiments", db.url)
    await asyncio.to_thread(command.downgrade, config, "0001")
    await asyncio.to_thread(command.upgrade, config, "head")
