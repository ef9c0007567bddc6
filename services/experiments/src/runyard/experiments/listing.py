"""Newest-first keyset pages over ``(created_at, id)``, as the dataset list does, and the
read/lock/list of an owned row (campaigns, jobs) under the ownership rules of ``access``."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Select, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from runyard.experiments import access, pagination
from runyard.shared.identity import Principal, require_writer

Row = TypeVar("Row")


async def newest_first(
    session: AsyncSession,
    query: Select[tuple[Row]],
    model: Any,
    *,
    kind: str,
    limit: int,
    cursor: str | None,
) -> tuple[Sequence[Row], str | None]:
    after = pagination.decode_cursor(cursor, kind=kind)
    if after is not None:
        try:
            key = (datetime.fromisoformat(after["t"]), uuid.UUID(after["i"]))
        except (KeyError, ValueError, TypeError) as exc:
            raise pagination.invalid_cursor() from exc
        query = query.where(tuple_(model.created_at, model.id) < key)
    rows = (
        await session.scalars(
            query.order_by(model.created_at.desc(), model.id.desc()).limit(limit + 1)
        )
    ).all()
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last: Any = rows[-1]
        next_cursor = pagination.encode_cursor(
            {"k": kind, "t": last.created_at.isoformat(), "i": str(last.id)}
        )
    return rows, next_cursor


async def get_owned(
    session: AsyncSession,
    model: Any,
    *,
    principal: Principal,
    row_id: uuid.UUID,
    what: str,
    write: bool = False,
) -> Any:
    """The row if the principal may read it (``write``: change it, and lock it); else 404/403."""
    query = select(model).where(model.id == row_id)
    if write:
        require_writer(principal)
        query = query.with_for_update().execution_options(populate_existing=True)
    row = (await session.execute(query)).scalar_one_or_none()
    (access.check_write if write else access.check_read)(principal, row, what)
    return row


async def list_owned(
    session: AsyncSession,
    model: Any,
    *,
    principal: Principal,
    kind: str,
    limit: int,
    cursor: str | None,
    status: str | None = None,
    owner_id: uuid.UUID | None = None,
) -> tuple[Sequence[Any], str | None]:
    """The rows the principal may see, newest first, optionally of one status / owner."""
    query = select(model)
    scope = access.owner_scope(model.owner_id, principal, owner_id)
    if scope is not None:
        query = query.where(scope)
    if status is not None:
        query = query.where(model.status == status)
    return await newest_first(session, query, model, kind=kind, limit=limit, cursor=cursor)
