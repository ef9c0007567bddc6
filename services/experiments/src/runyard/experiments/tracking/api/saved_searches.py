from __future__ import annotations

import uuid

from fastapi import APIRouter, Response

from runyard.experiments.deps import SettingsDep
from runyard.experiments.tracking.schemas import (
    ExperimentOut,
    SavedSearchCreate,
    SavedSearchOut,
    SavedSearchUpdate,
)
from runyard.experiments.tracking.service import saved_searches
from runyard.shared.identity import CurrentPrincipal
from runyard.shared.pagination import DEFAULT_LIMIT, CursorParam, Limit, Page
from runyard.shared.runtime import SessionDep

router = APIRouter(prefix="/api/v1/saved-searches", tags=["saved searches"])


@router.post("", status_code=201, response_model=SavedSearchOut)
async def create_saved_search(
    body: SavedSearchCreate, session: SessionDep, principal: CurrentPrincipal
) -> SavedSearchOut:
    saved = await saved_searches.create_saved_search(session, principal=principal, data=body)
    return SavedSearchOut.model_validate(saved)


@router.get("", response_model=Page[SavedSearchOut])
async def list_saved_searches(
    session: SessionDep,
    principal: CurrentPrincipal,
    pinned: bool | None = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: CursorParam = None,
) -> Page[SavedSearchOut]:
    rows, next_cursor = await saved_searches.list_saved_searches(
        session, principal=principal, limit=limit, cursor=cursor, pinned=pinned
    )
    return Page[SavedSearchOut](
        items=[SavedSearchOut.model_validate(r) for r in rows], next_cursor=next_cursor
    )


@router.get("/{search_id}", response_model=SavedSearchOut)
async def get_saved_search(
    search_id: uuid.UUID, session: SessionDep, principal: CurrentPrincipal
) -> SavedSearchOut:
    saved = await saved_searches.get_saved_search(session, principal=principal, search_id=search_id)
    return SavedSearchOut.model_validate(saved)


@router.patch("/{search_id}", response_model=SavedSearchOut)
async def update_saved_search(
    search_id: uuid.UUID, body: SavedSearchUpdate, session: SessionDep, principal: CurrentPrincipal
) -> SavedSearchOut:
    saved = await saved_searches.update_saved_search(
        session, principal=principal, search_id=search_id, data=body
    )
    return SavedSearchOut.model_validate(saved)


@router.delete("/{search_id}", status_code=204)
async def delete_saved_search(
    search_id: uuid.UUID, session: SessionDep, principal: CurrentPrincipal
) -> Response:
    await saved_searches.delete_saved_search(session, principal=principal, search_id=search_id)
    return Response(status_code=204)


@router.post("/{search_id}/run", response_model=Page[ExperimentOut])
async def run_saved_search(
    search_id: uuid.UUID,
    session: SessionDep,
    principal: CurrentPrincipal,
    settings: SettingsDep,
    limit: Limit = DEFAULT_LIMIT,
    cursor: CursorParam = None,
) -> Page[ExperimentOut]:
    """Run the search; the first page (no cursor) adds one to its usage count."""
    rows, next_cursor = await saved_searches.run_saved_search(
        session,
        principal=principal,
        search_id=search_id,
        limit=limit,
        cursor=cursor,
        statement_timeout_ms=settings.search_statement_timeout_ms,
    )
    return Page[ExperimentOut](
        items=[ExperimentOut.model_validate(r) for r in rows], next_cursor=next_cursor
    )
