"""Create a service's database role and schema (the stack and the test fixtures call this).

Each service logs in as its own role, which owns its schema and has no rights on any other.
"""

from __future__ import annotations

import asyncpg

from runyard.shared.db import asyncpg_dsn
from runyard.shared.outbox import check_identifier


async def ensure_database(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(admin_url))
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{check_identifier(name)}"')
    finally:
        await conn.close()


async def provision_service(
    admin_url: str, *, schema: str, role: str, password: str, database: str
) -> None:
    """Idempotent: role (login, password), CONNECT on the database, schema owned by the role."""
    s, r = check_identifier(schema), check_identifier(role)
    conn = await asyncpg.connect(asyncpg_dsn(admin_url))
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
        literal = await conn.fetchval("SELECT quote_literal($1::text)", password)
        verb = "ALTER" if exists else "CREATE"
        await conn.execute(f"{verb} ROLE {r} LOGIN PASSWORD {literal}")
        await conn.execute(f'GRANT CONNECT ON DATABASE "{check_identifier(database)}" TO {r}')
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {s} AUTHORIZATION {r}")
        await conn.execute(f"ALTER SCHEMA {s} OWNER TO {r}")
        await conn.execute(f"ALTER ROLE {r} SET search_path = {s}")
        await conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    finally:
        await conn.close()


def role_url(admin_url: str, *, role: str, password: str, database: str) -> str:
    """The admin URL with the service role's credentials and the given database."""
    from sqlalchemy.engine import make_url

    url = make_url(admin_url.replace("postgresql://", "postgresql+asyncpg://", 1))
    return url.set(username=role, password=password, database=database).render_as_string(
        hide_password=False
    )
