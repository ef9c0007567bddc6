"""Alembic helpers: one history per service, version table inside the service's own schema."""

from __future__ import annotations

import asyncio
import importlib.util
import os
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from sqlalchemy import MetaData, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from runyard.shared.db import schema_metadata
from runyard.shared.inbox import inbox_table
from runyard.shared.outbox import check_identifier, outbox_table, outbox_trigger_ddl


def migrations_dir(package: str) -> Path:
    """``runyard.auth`` -> the ``migrations`` folder inside that package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise LookupError(f"package {package} not found")
    return Path(next(iter(spec.submodule_search_locations))) / "migrations"


def alembic_config(package: str, database_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir(package)))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return cfg


def upgrade(package: str, database_url: str, revision: str = "head") -> None:
    """Run a service's migrations (blocking; call from a thread inside an event loop)."""
    command.upgrade(alembic_config(package, database_url), revision)


def run_env(target_metadata: MetaData, *, schema: str, url_env: str) -> None:
    """Body of every service's ``migrations/env.py`` (online, async engine)."""
    check_identifier(schema)
    url = context.config.get_main_option("sqlalchemy.url") or os.environ.get(url_env)
    if not url:
        raise RuntimeError(f"no database URL: set {url_env}")

    def do_run(connection: Connection) -> None:
        exists = connection.execute(
            text("SELECT 1 FROM pg_namespace WHERE nspname = :s"), {"s": schema}
        ).first()
        if not exists:  # provisioning normally made it; CREATE needs rights on the database
            connection.execute(text(f"CREATE SCHEMA {schema}"))
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            version_table_schema=schema,
            include_schemas=True,
            include_name=lambda name, type_, _parent: type_ != "schema" or name in (None, schema),
        )
        with context.begin_transaction():
            context.run_migrations()

    async def run() -> None:
        engine = create_async_engine(url)
        async with engine.begin() as conn:
            await conn.run_sync(do_run)
        await engine.dispose()

    asyncio.run(run())


def create_outbox_and_inbox(connection: Connection, schema: str) -> None:
    """Create the service's ``outbox`` (with its NOTIFY trigger) and ``inbox`` tables."""
    metadata = schema_metadata(check_identifier(schema))
    outbox_table(metadata)
    inbox_table(metadata)
    metadata.create_all(connection)
    for ddl in outbox_trigger_ddl(schema):
        connection.execute(text(ddl))


def drop_outbox_and_inbox(connection: Connection, schema: str) -> None:
    s = check_identifier(schema)
    connection.execute(text(f"DROP TABLE IF EXISTS {s}.outbox, {s}.inbox"))
    connection.execute(text(f"DROP FUNCTION IF EXISTS {s}.outbox_notify()"))
