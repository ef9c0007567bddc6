from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response

from runyard.experiments.tracking.schemas import TagCreate, TagOut, TagUpdate
from runyard.experiments.tracking.service import tags
from runyard.shared.identity import CurrentPrincipal
from runyard.shared.pagination import DEFAULT_LIMIT, CursorParam, Limit, Page
from runyard.shared.runtime import SessionDep

router = APIRouter(prefix="/api/v1/tags", tags=["tags"])


@router.post("", status_code=201, response_model=TagOut)
async def create_tag(body: TagCreate, session: SessionDep, principal: CurrentPrincipal) -> TagOut:
    return TagOut.model_validate(await tags.create_tag(session, principal=principal, data=body))


@router.get("", response_model=Page[TagOut])
async def list_tags(
    session: SessionDep,
    principal: CurrentPrincipal,
    owner_id: Annotated[
        uuid.UUID | None, Query(description="admins and viewers: only this owner's tags")
    ] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: CursorParam = None,
) -> Page[TagOut]:
    rows, next_cursor = await tags.list_tags(
        session, principal=principal, limit=limit, cursor=cursor, owner_id=owner_id
    )
    return Page[TagOut](items=[TagOut.model_validate(r) for r in rows], next_cursor=next_cursor)


@router.get("/{tag_id}", response_model=TagOut)
async def get_tag(tag_id: uuid.UUID, session: SessionDep, principal: CurrentPrincipal) -> TagOut:
    return TagOut.model_validate(await tags.get_tag(session, principal=principal, tag_id=tag_id))


@router.patch("/{tag_id}", response_model=TagOut)
async def update_tag(
    tag_id: uuid.UUID, body: TagUpdate, session: SessionDep, principal: CurrentPrincipal
) -> TagOut:
    tag = await tags.update_tag(session, principal=principal, tag_id=tag_id, data=body)
    return TagOut.model_validate(tag)


@router.delete("/{tag_id}", status_code=204)
async def delete_tag(
    tag_id: uuid.UUID, session: SessionDep, principal: CurrentPrincipal
) -> Response:
    await tags.delete_tag(session, principal=principal, tag_id=tag_id)
    return Response(status_code=204)
