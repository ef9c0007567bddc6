from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import create_async_engine

from runyard.auth.models import SCHEMA, Base
from runyard.shared.testing import ServiceDatabase

SHARED_TABLES = {"outbox", "inbox"}


def _owned_by_auth(obj: Any, name: Any, type_: str, _reflected: bool, _other: Any) -> bool:
    table = obj if isinstance(obj, Table) else getattr(obj, "table", None)
    return table is None or table.name not in SHARED_TABLES


async def test_migrations_match_the_models(db: ServiceDatabase) -> None:
    def diff(connection: Any) -> list[Any]:
        context = MigrationContext.configure(
            connection,
            opts={
                "include_schemas": True,
                "version_table_schema": SCHEMA,
                "include_name": lambda name, type_, _parent: type_ != "schema" or name == SCHEMA,
                "include_object": _owned_by_auth,
            },
        )
        return list(compare_metadata(context, Base.metadata))

    # The admin connection: its search_path does not start with the auth schema, so Alembic
    # reflects the tables under "auth" as the models declare them.
    engine = create_async_engine(db.admin_url)
    try:
        async with engine.connect() as conn:
            assert await conn.run_sync(diff) == []
    finally:
        await engine.dispose()
