"""Database plumbing: engine/sessionmaker built at startup, a schema-bound declarative base."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, MetaData, event, func
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> uuid.UUID:
    return uuid.uuid4()


def schema_metadata(schema: str) -> MetaData:
    """MetaData for one service's schema, with the project's constraint naming convention."""
    return MetaData(schema=schema, naming_convention=NAMING_CONVENTION)


class UUIDPrimaryKey:
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)


class Timestamps:
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), default=utcnow
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), default=utcnow, onupdate=utcnow
    )


#: Every service's declarative base maps ``datetime`` to ``timestamptz``:
#:
#:     class Base(DeclarativeBase):
#:         metadata = schema_metadata(SCHEMA)
#:         type_annotation_map = TYPE_ANNOTATION_MAP
TYPE_ANNOTATION_MAP: dict[Any, Any] = {datetime: DateTime(timezone=True)}


#: A pooled connection idle longer than this is pinged before it is handed out.
PING_AFTER_IDLE_S = 1.0


def create_engine(
    url: str, *, pool_size: int = 10, application_name: str = "runyard"
) -> AsyncEngine:
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        connect_args={"server_settings": {"application_name": application_name}},
    )
    ping_idle_connections(engine, PING_AFTER_IDLE_S)
    return engine


def ping_idle_connections(engine: AsyncEngine, idle_s: float) -> None:
    """SQLAlchemy's ``pool_pre_ping``, for connections idle at least ``idle_s`` only.

    The stock pre-ping checks every connection it hands out, and asyncpg's ping is three round
    trips (``BEGIN``, ``;``, ``ROLLBACK``): under load that was the most expensive part of a
    short request. A connection back in the pool a moment ago was alive a moment ago; one that
    sat idle (across a database restart, say) is pinged, and a dead one invalidates the pool as
    the pre-ping does. What is left: a request that takes a connection checked in less than
    ``idle_s`` earlier, after the server went away in between, fails once (503, the database
    being unavailable) and the pool is invalidated by that error as well.
    """
    dialect = engine.sync_engine.dialect

    @event.listens_for(engine.sync_engine, "checkin")
    def _checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info["checked_in_at"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("checked_in_at")  # None: a new connection, not pinged
        if since is None or time.monotonic() - since < idle_s:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as error:
            if dialect.is_disconnect(error, dbapi_connection, None):
                raise sa_exc.InvalidatePoolError() from error
            raise


def create_sessionmaker(
    engine: AsyncEngine, *, schema: str, source: str | None = None
) -> async_sessionmaker[AsyncSession]:
    """Sessions remember their service's schema (``session.info["schema"]``) and the CloudEvents
    ``source`` of the events they emit (``session.info["source"]``, by default
    ``/runyard/<schema>``: each service's schema is named after it) for the outbox."""
    info = {"schema": schema, "source": source or f"/runyard/{schema}"}
    return async_sessionmaker(engine, expire_on_commit=False, info=info)


async def session_scope(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """One transaction per unit of work: commits on success, rolls back on any error."""
    async with sessionmaker() as session, session.begin():
        yield session


def asyncpg_dsn(url: str) -> str:
    """The same URL in the form asyncpg.connect() accepts (no SQLAlchemy driver suffix)."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every exception behind it (SQLAlchemy's ``orig``, ``__cause__``,
    ``__context__``), each once."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        orig = getattr(current, "orig", None)
        pending += [
            orig if isinstance(orig, BaseException) else None,
            current.__cause__,
            current.__context__,
        ]


def database_error_code(exc: BaseException) -> str | None:
    """The SQLSTATE of a database error anywhere in ``exc``'s chain, without importing a
    driver."""
    for current in exception_chain(exc):
        code = getattr(current, "sqlstate", None) or getattr(current, "pgcode", None)
        if isinstance(code, str) and code:
            return code
    return None


#: The database is unreachable, shutting down or starting up: 08xxx connection exceptions,
#: 57P01 admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now, 53300 too_many_connections.
UNAVAILABLE_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "53300"})


def database_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database could not be reached (worth retrying), not that the
    request was wrong: a 503 with ``Retry-After``, not a 500."""
    import asyncpg
    from sqlalchemy.exc import DBAPIError

    code = database_error_code(exc)
    if code is not None and (code.startswith("08") or code in UNAVAILABLE_SQLSTATES):
        return True
    for current in exception_chain(exc):
        if isinstance(
            current,
            ConnectionError
            | TimeoutError
            | asyncpg.exceptions.InterfaceError
            | asyncpg.exceptions.InternalClientError,
        ):
            return True
        if isinstance(current, OSError) and not isinstance(current, FileNotFoundError):
            return True
        if isinstance(current, DBAPIError) and current.connection_invalidated:
            return True
    return False


def _set_event(event: asyncio.Event, *_args: object) -> None:
    event.set()


class PgListener:
    """Keeps one connection LISTENing on ``channel`` for as long as ``run()`` runs.

    ``on_notify(payload)`` is called for every notification. ``on_connect()`` is called each
    time the LISTEN starts, the first time included: notifications sent while nobody listened
    are lost, so whoever relies on them looks for work then. A connection that ends (the server
    restarted, the backend was terminated) is noticed at once and opened again, with a backoff
    while the server cannot be reached. Notifications only shorten a wait: every user also has
    a fallback timer, so a lost one costs latency, never correctness.
    """

    def __init__(
        self,
        dsn: str,
        channel: str,
        *,
        on_notify: Callable[[str], None],
        on_connect: Callable[[], None] = lambda: None,
        connect_timeout_s: float = 10.0,
        max_backoff_s: float = 30.0,
    ) -> None:
        self.dsn = dsn
        self.channel = channel
        self.on_notify = on_notify
        self.on_connect = on_connect
        self.connect_timeout_s = connect_timeout_s
        self.max_backoff_s = max_backoff_s
        #: set while a LISTEN connection is open (tests wait for it)
        self.listening = asyncio.Event()
        self.connections = 0

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        self.on_notify(payload)

    async def run(self) -> None:
        import asyncpg

        from runyard.shared.logging import get_logger

        log = get_logger(__name__)
        backoff = 0.5
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self.dsn, timeout=self.connect_timeout_s)
                ended = asyncio.Event()
                conn.add_termination_listener(functools.partial(_set_event, ended))
                await conn.add_listener(self.channel, self._notified)
                self.connections += 1
                self.listening.set()
                backoff = 0.5
                self.on_connect()
                await ended.wait()
                log.info("pg.listen.ended", channel=self.channel)
            except asyncio.CancelledError:
                raise
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("pg.listen.unavailable", channel=self.channel, error=repr(exc))
            finally:
                self.listening.clear()
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await conn.close(timeout=2)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.max_backoff_s)
