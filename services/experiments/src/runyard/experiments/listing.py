"""Newest-first keyset pages over ``(created_at, id)``, as the dataset list does."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from runyard.experiments import pagination

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
