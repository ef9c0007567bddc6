"""The migration tests every service runs: its Alembic history creates exactly what its models
declare, and the history goes down to the start and up again.

    async def test_migrations_match_the_models(db) -> None:
        assert await model_differences(db, Base.metadata) == []

    async def test_migrations_go_down_and_up_again(db) -> None:
        await round_trip("runyard.experiments", db)
        assert await model_differences(db, Base.metadata) == []
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData
from sqlalchemy.engine import Connection

from runyard.shared.db import create_engine
from runyard.shared.migrations import alembic_config

if TYPE_CHECKING:
    from runyard.shared.testing import ServiceDatabase

#: Tables every service gets from runyard.shared.migrations, checked by the shared tests.
SHARED_TABLES = frozenset({"outbox", "inbox", "alembic_version"})


async def model_differences(
    db: ServiceDatabase,
    metadata: MetaData,
    *,
    migration_only_indexes: Collection[str] = (),
) -> list[Any]:
    """What Alembic's autogenerate finds between the migrated database and ``metadata`` in the
    service's schema: [] when they agree. ``migration_only_indexes`` are indexes the
    migrations define that the models cannot declare (expression, GIN, partial ...)."""

    def ours(obj: Any, name: str | None, type_: str, reflected: bool, _other: Any) -> bool:
        if type_ == "index" and reflected and name in migration_only_indexes:
            return False
        table = obj if type_ == "table" else getattr(obj, "table", None)
        return table is None or table.name not in SHARED_TABLES

    def diff(connection: Connection) -> list[Any]:
        context = MigrationContext.configure(
            connection,
            opts={
                "include_schemas": True,
                "version_table_schema": db.schema,
                "include_name": lambda name, type_, _parent: type_ != "schema" or name == db.schema,
                "include_object": ours,
            },
        )
        return list(compare_metadata(context, metadata))

    # As the admin: with the service role the service's schema is the default one, and
    # autogenerate would compare it as schema None.
    engine = create_engine(db.admin_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(diff)
    finally:
        await engine.dispose()


async def round_trip(package: str, db: ServiceDatabase, *, down_to: str = "base") -> None:
    """Downgrade the service's migrations to ``down_to`` and upgrade them to head again."""
    config = alembic_config(package, db.url)
    await asyncio.to_thread(command.downgrade, config, down_to)
    await asyncio.to_thread(command.upgrade, config, "head")
