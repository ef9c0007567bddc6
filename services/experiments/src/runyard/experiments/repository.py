"""Queries every feature shares: an owned row read (or locked) under the access rules, newest
first pages of owned rows, and unique constraints turned into their 409 problems."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Select, bindparam, select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from runyard.experiments import access
from runyard.shared.http import ProblemError
from runyard.shared.identity import Principal, require_writer
from runyard.shared.pagination import cut, decode_cursor

Row = TypeVar("Row")


_BY_ID: dict[tuple[Any, bool], Select[Any]] = {}


def by_id(model: Any, *, lock: bool = False) -> Select[Any]:
    """The row of ``model`` whose id is the parameter ``row_id``; ``lock``: FOR UPDATE until
    the transaction ends, and read afresh even if the session holds the row already. Built
    once per (model, lock): SQLAlchemy computes a statement's cache key once per statement
    object, and for a whole row's SELECT that walk cost more than the rest of the query's
    Python side."""
    query = _BY_ID.get((model, lock))
    if query is None:
        query = select(model).where(model.id == bindparam("row_id"))
        if lock:
            query = query.with_for_update().execution_options(populate_existing=True)
        _BY_ID[(model, lock)] = query
    return query


async def get_owned(
    session: AsyncSession,
    model: type[Row],
    row_id: uuid.UUID,
    *,
    principal: Principal,
    what: str,
    write: bool = False,
) -> Row:
    """The row if the principal may read it, or with ``write`` change it (then it stays locked
    until the transaction ends); else 403 for a viewer's write, 404 for anything not theirs."""
    if write:
        require_writer(principal)
    found = await session.execute(by_id(model, lock=write), {"row_id": row_id})
    row = found.scalar_one_or_none()
    (access.check_write if write else access.check_read)(principal, row, what)
    assert row is not None
    return row  # type: ignore[no-any-return]


def created_key(row: Any) -> tuple[datetime, uuid.UUID]:
    return row.created_at, row.id


async def newest_first(
    session: AsyncSession,
    query: Select[Row],
    model: Any,
    *,
    kind: str,
    limit: int,
    cursor: str | None,
) -> tuple[list[Row], str | None]:
    """One keyset page of ``query``'s rows over ``(created_at, id)``, newest first."""
    after = decode_cursor(cursor, kind, datetime, uuid.UUID)
    if after is not None:
        query = query.where(tuple_(model.created_at, model.id) < after)
    ordered = query.order_by(model.created_at.desc(), model.id.desc()).limit(limit + 1)
    return cut((await session.scalars(ordered)).all(), limit, kind, created_key)


async def list_owned(
    session: AsyncSession,
    model: type[Row],
    *,
    principal: Principal,
    kind: str,
    limit: int,
    cursor: str | None,
    status: str | None = None,
    owner_id: uuid.UUID | None = None,
) -> tuple[list[Row], str | None]:
    """The rows the principal may see, newest first, optionally of one status and owner."""
    table: Any = model
    query = select(table)
    scope = access.owner_scope(table.owner_id, principal, owner_id)
    if scope is not None:
        query = query.where(scope)
    if status is not None:
        query = query.where(table.status == status)
    return await newest_first(session, query, table, kind=kind, limit=limit, cursor=cursor)


def constraint_of(exc: IntegrityError) -> str | None:
    """The name of the constraint a statement violated (asyncpg reports it)."""
    for candidate in (exc.orig, getattr(exc.orig, "__cause__", None)):
        name = getattr(candidate, "constraint_name", None)
        if name:
            return str(name)
    return None


@asynccontextmanager
async def unique_or_conflict(
    session: AsyncSession, conflicts: Mapping[str, ProblemError]
) -> AsyncIterator[None]:
    """Run the block's changes in a SAVEPOINT and flush them; a violation of one of the named
    unique constraints becomes its 409 problem (the request's transaction stays usable).

    Make the changes inside the block: ``begin_nested`` flushes what is pending before it.
    """
    try:
        async with session.begin_nested():
            yield
            await session.flush()
    except IntegrityError as exc:
        problem = conflicts.get(constraint_of(exc) or "")
        if problem is None:
            raise
        raise problem from None
