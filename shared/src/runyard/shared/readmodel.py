"""Read models of another service's aggregates (the users of auth, ...), fed by its events.

Events may arrive more than once and out of order (a redelivery after a newer change, replicas
reading different partitions after a rebalance). Each event carries its aggregate's version as the
CloudEvents ``sequence``; a row remembers the version it holds and takes only newer ones, so the
read model converges on the latest state whatever the order.

The model needs a unique key column, an integer ``sequence`` column and an ``updated_at`` column.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import func
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession


async def upsert_if_newer(
    session: AsyncSession,
    model: Any,
    values: Mapping[str, Any],
    *,
    key: str,
    update: Iterable[str] | None = None,
) -> bool:
    """Insert ``values`` (which include ``key`` and ``sequence``) or, for a known row, write
    ``update`` (default: every column of ``values``) — only if the stored ``sequence`` is older.
    True when the row was written, False when the event was stale (nothing changed)."""
    columns = [c for c in (values if update is None else update) if c != key]
    if "sequence" not in columns:
        columns.append("sequence")
    row = insert(model).values(**values, updated_at=func.now())
    stmt = row.on_conflict_do_update(
        index_elements=[getattr(model, key)],
        set_={**{c: row.excluded[c] for c in columns}, "updated_at": func.now()},
        where=model.sequence < row.excluded.sequence,
    ).returning(getattr(model, key))
    return (await session.execute(stmt)).first() is not None
