"""Saved searches: a user's named experiment searches (filter, full text, ordering); the query
and ordering are validated when saved."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from runyard.experiments import errors
from runyard.experiments.models import Experiment, SavedSearch
from runyard.experiments.repository import get_owned, unique_or_conflict
from runyard.experiments.schemas import requested_changes
from runyard.experiments.tracking.repository import saved_searches as repository
from runyard.experiments.tracking.repository.search import SearchParams
from runyard.experiments.tracking.schemas import SavedSearchCreate, SavedSearchUpdate
from runyard.experiments.tracking.service.search import search_experiments, validate
from runyard.shared.db import new_id
from runyard.shared.http import ProblemError
from runyard.shared.identity import Principal, require_writer

NOT_NULLABLE = {"name", "is_pinned", "query"}


def name_taken(name: str) -> dict[str, ProblemError]:
    return {"uq_saved_searches_owner_id_name": errors.NameTaken("a saved search", name)}


async def create_saved_search(
    session: AsyncSession, *, principal: Principal, data: SavedSearchCreate
) -> SavedSearch:
    require_writer(principal)
    validate(data.query, data.order_by)
    saved = SavedSearch(id=new_id(), owner_id=principal.user_id, usage_count=0, **data.model_dump())
    async with unique_or_conflict(session, name_taken(data.name)):
        session.add(saved)
    return saved


async def get_saved_search(
    session: AsyncSession, *, principal: Principal, search_id: uuid.UUID, write: bool = False
) -> SavedSearch:
    return await get_owned(
        session, SavedSearch, search_id, principal=principal, what="saved search", write=write
    )


async def list_saved_searches(
    session: AsyncSession,
    *,
    principal: Principal,
    limit: int,
    cursor: str | None,
    pinned: bool | None = None,
) -> tuple[list[SavedSearch], str | None]:
    return await repository.list_saved_searches(
        session, principal=principal, limit=limit, cursor=cursor, pinned=pinned
    )


async def update_saved_search(
    session: AsyncSession, *, principal: Principal, search_id: uuid.UUID, data: SavedSearchUpdate
) -> SavedSearch:
    saved = await get_saved_search(session, principal=principal, search_id=search_id, write=True)
    changes = requested_changes(data, not_nullable=NOT_NULLABLE)
    validate(changes.get("query", saved.query), changes.get("order_by", saved.order_by))
    async with unique_or_conflict(session, name_taken(changes.get("name", ""))):
        for key, value in changes.items():
            setattr(saved, key, value)
    return saved


async def delete_saved_search(
    session: AsyncSession, *, principal: Principal, search_id: uuid.UUID
) -> None:
    saved = await get_saved_search(session, principal=principal, search_id=search_id, write=True)
    await session.delete(saved)
    await session.flush()


async def run_saved_search(
    session: AsyncSession,
    *,
    principal: Principal,
    search_id: uuid.UUID,
    limit: int,
    cursor: str | None,
    statement_timeout_ms: int,
) -> tuple[list[Experiment], str | None]:
    """Run it with the caller's visibility. The first page counts as a use (later pages of the
    same run do not): ``usage_count`` + 1 and ``last_used_at`` = now, viewers' runs included."""
    saved = await get_saved_search(session, principal=principal, search_id=search_id)
    if cursor is None:
        await repository.count_use(session, saved.id)
    return await search_experiments(
        session,
        principal=principal,
        params=SearchParams(filter=saved.query, q=saved.q, order_by=saved.order_by),
        limit=limit,
        cursor=cursor,
        statement_timeout_ms=statement_timeout_ms,
    )
