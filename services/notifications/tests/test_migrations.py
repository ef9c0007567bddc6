from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection

from runyard.notifications.models import SCHEMA, Base
from runyard.shared.db import create_engine

# outbox/inbox come from the shared helper and are checked there.
OWN_TABLES = {
    "users",
    "email_logs",
    "notification_preferences",
    "email_digest_queue",
    "in_app_notifications",
    "alert_throttles",
}


def owned(obj: Any, name: str | None, type_: str, _reflected: bool, _compare_to: Any) -> bool:
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

    # As the admin: with the service role, ``notifications`` is the default schema and
    # autogenerate would compare it as schema None.
    engine = create_engine(db.admin_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            assert await conn.run_sync(diff) == []
    finally:
        await engine.dispose()
