from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine

from runyard.shared.testing import ServiceDatabase
from runyard.webhooks.models import Base

#: Created by the shared helper (runyard.shared.migrations), not by this service's models.
NOT_OURS = {"alembic_version", "outbox", "inbox"}


def _ours(obj: Any, name: str | None, type_: str, _reflected: bool, _other: Any) -> bool:
    table = name if type_ == "table" else getattr(getattr(obj, "table", None), "name", None)
    return table not in NOT_OURS


async def test_migrations_create_exactly_what_the_models_declare(db: ServiceDatabase) -> None:
    # as the admin: the service role's search_path would make reflection drop the schema name
    engine = create_async_engine(db.admin_url)

    def diff(connection: Any) -> list[Any]:
        context = MigrationContext.configure(
            connection,
            opts={
                "include_schemas": True,
                "include_name": lambda name, type_, _parent: (
                    type_ != "schema" or name == "webhooks"
                ),
                "include_object": _ours,
            },
        )
        return list(compare_metadata(context, Base.metadata))

    try:
        async with engine.connect() as conn:
            differences = await conn.run_sync(diff)
    finally:
        await engine.dispose()
    assert differences == []
