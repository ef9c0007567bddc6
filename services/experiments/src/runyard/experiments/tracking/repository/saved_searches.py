"""Queries of saved searches."""

from __future__ import annotations

import uuid

from sqlalchemy import select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from runyard.experiments import access
from runyard.experiments.models import SavedSearch
from runyard.shared.db import utcnow
from runyard.shared.identity import Principal
from runyard.shared.pagination import cut, decode_cursor


def pinned_key(saved: SavedSearch) -> tuple[int, str, uuid.UUID]:
    # NOT is_pinned first: false (pinned) sorts before true
    return (0 if saved.is_pinned else 1), saved.name, saved.id


async def list_saved_searches(
    session: AsyncSession,
    *,
    principal: Principal,
    limit: int,
    cursor: str | None,
    pinned: bool | None = None,
) -> tuple[list[SavedSearch], str | None]:
    """Pinned ones first, then by name."""
    query = select(SavedSearch)
    scope = access.owner_scope(SavedSearch.owner_id, principal)
    if scope is not None:
        query = query.where(scope)
    if pinned is not None:
        query = query.where(SavedSearch.is_pinned.is_(pinned))
    after = decode_cursor(cursor, "saved_searches", int, str, uuid.UUID)
    if after is not None:
        unpinned, name, last_id = after
        query = query.where(
            tuple_(~SavedSearch.is_pinned, SavedSearch.name, SavedSearch.id)
            > (bool(unpinned), name, last_id)
        )
    order = (~SavedSearch.is_pinned, SavedSearch.name, SavedSearch.id)
    rows = (await session.scalars(query.order_by(*order).limit(limit + 1))).all()
    return cut(rows, limit, "saved_searches", pinned_key)


async def count_use(session: AsyncSession, search_id: uuid.UUID) -> None:
    """One more use of the saved search, now."""
    await session.execute(
        update(SavedSearch)
        .where(SavedSearch.id == search_id)
        .values(usage_count=SavedSearch.usage_count + 1, last_used_at=utcnow())
        .execution_options(synchronize_session=False)
    )
