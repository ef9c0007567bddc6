"""Saved searches: a user's named experiment searches (filter, full text, ordering)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from runyard.experiments import access, pagination, repository, search
from runyard.experiments.models import Experiment, SavedSearch
from runyard.experiments.schemas import SavedSearchCreate, SavedSearchUpdate
from runyard.shared.db import new_id, utcnow
from runyard.shared.http import ProblemError
from runyard.shared.identity import Principal, require_writer


def name_taken(name: str) -> dict[str, ProblemError]:
    return {
        "uq_saved_searches_owner_id_name": repository.conflict(
            f"You already have a saved search named {name!r}.", field="name"
        )
    }


def params_of(saved: SavedSearch) -> search.SearchParams:
    return search.SearchParams(filter=saved.query, q=saved.q, order_by=saved.order_by)


async def create_saved_search(
    session: AsyncSession, *, principal: Principal, data: SavedSearchCreate
) -> SavedSearch:
    require_writer(principal)
    search.validate(search.SearchParams(filter=data.query, order_by=data.order_by))
    saved = SavedSearch(id=new_id(), owner_id=principal.user_id, usage_count=0, **data.model_dump())
    async with repository.unique_or_conflict(session, name_taken(data.name)):
        session.add(saved)
    return saved


async def get_saved_search(
    session: AsyncSession, *, principal: Principal, search_id: uuid.UUID, write: bool = False
) -> SavedSearch:
    if write:
        require_writer(principal)
    saved = await session.get(SavedSearch, search_id, populate_existing=True, with_for_update=write)
    (access.check_write if write else access.check_read)(principal, saved, "saved search")
    assert saved is not None
    return saved


async def list_saved_searches(
    session: AsyncSession,
    *,
    principal: Principal,
    limit: int,
    cursor: str | None,
    pinned: bool | None = None,
) -> tuple[Sequence[SavedSearch], str | None]:
    """Pinned ones first, then by name."""
    query = select(SavedSearch)
    scope = access.owner_scope(SavedSearch.owner_id, principal)
    if scope is not None:
        query = query.where(scope)
    if pinned is not None:
        query = query.where(SavedSearch.is_pinned.is_(pinned))
    # NOT is_pinned: false (pinned) sorts first
    after = pagination.decode_cursor(cursor, kind="saved_searches")
    if after is not None:
        try:
            key = (not bool(after["p"]), str(after["n"]), uuid.UUID(after["i"]))
        except (KeyError, ValueError, TypeError) as exc:
            raise pagination.invalid_cursor() from exc
        query = query.where(tuple_(~SavedSearch.is_pinned, SavedSearch.name, SavedSearch.id) > key)
    rows = (
        await session.scalars(
            query.order_by(~SavedSearch.is_pinned, SavedSearch.name, SavedSearch.id).limit(
                limit + 1
            )
        )
    ).all()
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        next_cursor = pagination.encode_cursor(
            {"k": "saved_searches", "p": last.is_pinned, "n": last.name, "i": str(last.id)}
        )
    return rows, next_cursor


async def update_saved_search(
    session: AsyncSession, *, principal: Principal, search_id: uuid.UUID, data: SavedSearchUpdate
) -> SavedSearch:
    saved = await get_saved_search(session, principal=principal, search_id=search_id, write=True)
    changes = data.model_dump(exclude_unset=True)
    for key in ("name", "is_pinned", "query"):
        if key in changes and changes[key] is None:
            raise ProblemError(422, "Validation failed", f"{key} cannot be null.")
    search.validate(
        search.SearchParams(
            filter=changes.get("query", saved.query),
            order_by=changes.get("order_by", saved.order_by),
        )
    )
    async with repository.unique_or_conflict(session, name_taken(changes.get("name", ""))):
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
) -> tuple[Sequence[Experiment], str | None]:
    """Run it with the caller's visibility. The first page counts as a use (later pages of the
    same run do not): ``usage_count`` + 1 and ``last_used_at`` = now, viewers' runs included."""
    saved = await get_saved_search(session, principal=principal, search_id=search_id)
    if cursor is None:
        await session.execute(
            update(SavedSearch)
            .where(SavedSearch.id == saved.id)
            .values(usage_count=SavedSearch.usage_count + 1, last_used_at=utcnow())
            .execution_options(synchronize_session=False)
        )
    return await search.search_experiments(
        session,
        principal=principal,
        params=params_of(saved),
        limit=limit,
        cursor=cursor,
        statement_timeout_ms=statement_timeout_ms,
    )
