"""Database provisioning (database, one role + schema per service, migrations) and dev secrets."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from runyard.devstack.services import ServiceDef
from runyard.shared.provision import ensure_database, provision_service, role_url


def sqlalchemy_url(url: str) -> str:
    """``postgresql://`` (or ``postgres://``) -> ``postgresql+asyncpg://``; other drivers kept."""
    for bare in ("postgresql://", "postgres://"):
        if url.startswith(bare):
            return "postgresql+asyncpg://" + url[len(bare) :]
    return url


def with_database(url: str, database: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(database=database).render_as_string(hide_password=False)


def _write_private(path: Path, data: bytes) -> None:
    """Write a file readable by its owner only (created 0600, replaced atomically)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def load_passwords(path: Path, schemas: Iterable[str]) -> dict[str, str]:
    """Per-schema role passwords, generated once and kept in ``path`` (0600)."""
    document = json.loads(path.read_text()) if path.exists() else {}
    stored: dict[str, str] = dict(document.get("db_passwords", {}))
    missing = [s for s in schemas if s not in stored]
    if missing:
        for schema in missing:
            stored[schema] = secrets.token_urlsafe(24)
        document["db_passwords"] = stored
        _write_private(path, json.dumps(document, indent=2).encode())
    return stored


def load_identity_secret(path: Path) -> str:
    """The key the gateway signs forwarded identities with (shared by all services), kept in
    ``path`` next to the role passwords."""
    document = json.loads(path.read_text()) if path.exists() else {}
    if "identity_secret" not in document:
        document["identity_secret"] = secrets.token_urlsafe(32)
        _write_private(path, json.dumps(document, indent=2).encode())
    return str(document["identity_secret"])


def ensure_jwt_key(path: Path) -> Path:
    """An Ed25519 private key (PKCS#8 PEM) at ``path``, generated on first use."""
    if not path.exists():
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        _write_private(path, pem)
    return path


@dataclass(frozen=True)
class ServiceLogin:
    service: ServiceDef
    url: str  # the service role's SQLAlchemy URL
    role: str
    password: str
    database: str


def logins_from_passwords(
    admin_url: str, services: Iterable[ServiceDef], passwords: Mapping[str, str], database: str
) -> list[ServiceLogin]:
    return [
        ServiceLogin(
            service=s,
            url=role_url(admin_url, role=s.role, password=passwords[s.schema], database=database),
            role=s.role,
            password=passwords[s.schema],
            database=database,
        )
        for s in services
    ]


def login_from_url(service: ServiceDef, url: str) -> ServiceLogin:
    """A login described by a role URL (compose passes each service's ``<PREFIX>DATABASE_URL``)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(sqlalchemy_url(url))
    if not (parsed.username and parsed.password and parsed.database):
        raise ValueError(f"{service.prefix}DATABASE_URL needs a user, a password and a database")
    return ServiceLogin(
        service=service,
        url=parsed.render_as_string(hide_password=False),
        role=parsed.username,
        password=parsed.password,
        database=parsed.database,
    )


def has_migrations(package: str) -> bool:
    from runyard.shared.migrations import migrations_dir

    try:
        return (migrations_dir(package) / "env.py").exists()
    except LookupError:
        return False


def provision(admin_url: str, logins: Iterable[ServiceLogin]) -> list[str]:
    """Create databases, roles and schemas, then run every service's migrations (blocking).

    Must not run inside an event loop (Alembic's env runs its own); returns the migrated packages.
    """
    admin_url = sqlalchemy_url(admin_url)
    logins = list(logins)

    async def roles_and_schemas() -> None:
        for database in dict.fromkeys(login.database for login in logins):
            await ensure_database(admin_url, database)
        for login in logins:
            await provision_service(
                with_database(admin_url, login.database),
                schema=login.service.schema,
                role=login.role,
                password=login.password,
                database=login.database,
            )

    asyncio.run(roles_and_schemas())
    from runyard.shared.migrations import upgrade  # Alembic: a slow import, only when needed

    migrated = []
    for login in logins:
        if has_migrations(login.service.package):
            upgrade(login.service.package, login.url)
            migrated.append(login.service.package)
    return migrated


def provision_off_loop(admin_url: str, logins: Iterable[ServiceLogin]) -> list[str]:
    """``provision`` in a thread of its own: callable from within a running event loop."""
    done: list[list[str]] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            done.append(provision(admin_url, logins))
        except BaseException as exc:
            failure.append(exc)

    worker = threading.Thread(target=run, name="provision", daemon=True)
    worker.start()
    worker.join()
    if failure:
        raise failure[0]
    return done[0]


async def migrated_to_head(service: ServiceDef, url: str) -> bool:
    """Whether the service's schema (reached with its own role's ``url``) is at the head of the
    service's Alembic history; False while the database, role, schema or table is missing."""
    import asyncpg
    from alembic.script import ScriptDirectory

    from runyard.shared.db import asyncpg_dsn
    from runyard.shared.migrations import alembic_config
    from runyard.shared.outbox import check_identifier

    url = sqlalchemy_url(url)
    heads = set(ScriptDirectory.from_config(alembic_config(service.package, url)).get_heads())
    try:
        conn = await asyncpg.connect(asyncpg_dsn(url), timeout=5)
    except (OSError, asyncpg.PostgresError):
        return False
    try:
        schema = check_identifier(service.schema)
        rows = await conn.fetch(f"SELECT version_num FROM {schema}.alembic_version")  # noqa: S608
    except (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError):
        return False
    finally:
        await conn.close()
    return {row["version_num"] for row in rows} == heads
