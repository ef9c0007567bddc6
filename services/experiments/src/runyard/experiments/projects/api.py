from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response

from runyard.experiments.projects import service
from runyard.experiments.projects.schemas import (
    ProjectCreate,
    ProjectOut,
    ProjectUpdate,
    StageFilter,
)
from runyard.shared.identity import CurrentPrincipal
from runyard.shared.pagination import DEFAULT_LIMIT, CursorParam, Limit, Page
from runyard.shared.runtime import SessionDep

router = APIRouter(prefix="/api/v1/projects", tags=["projects"])


@router.post(
    "",
    status_code=201,
    response_model=ProjectOut,
    responses={409: {"description": "you already have a project of that name"}},
)
async def create_project(
    body: ProjectCreate, session: SessionDep, principal: CurrentPrincipal
) -> ProjectOut:
    project = await service.create_project(session, principal=principal, data=body)
    return ProjectOut.model_validate(project)


@router.get("", response_model=Page[ProjectOut])
async def list_projects(
    session: SessionDep,
    principal: CurrentPrincipal,
    lifecycle_stage: Annotated[
        StageFilter, Query(description="`active` (default), `deleted` or `all`")
    ] = "active",
    name: Annotated[
        str | None, Query(max_length=255, description="only the project of this name")
    ] = None,
    owner_id: Annotated[
        uuid.UUID | None, Query(description="admins and viewers: only this owner's projects")
    ] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: CursorParam = None,
) -> Page[ProjectOut]:
    """Newest first."""
    rows, next_cursor = await service.list_projects(
        session,
        principal=principal,
        limit=limit,
        cursor=cursor,
        stage=lifecycle_stage,
        owner_id=owner_id,
        name=name,
    )
    return Page[ProjectOut](
        items=[ProjectOut.model_validate(r) for r in rows], next_cursor=next_cursor
    )


@router.get("/{project_id}", response_model=ProjectOut)
async def get_project(
    project_id: uuid.UUID, session: SessionDep, principal: CurrentPrincipal
) -> ProjectOut:
    """Deleted projects too: see ``lifecycle_stage``."""
    project = await service.get_project(session, principal=principal, project_id=project_id)
    return ProjectOut.model_validate(project)


@router.patch(
    "/{project_id}",
    response_model=ProjectOut,
    responses={409: {"description": "the name is taken, or the project is deleted"}},
)
async def update_project(
    project_id: uuid.UUID, body: ProjectUpdate, session: SessionDep, principal: CurrentPrincipal
) -> ProjectOut:
    project = await service.update_project(
        session, principal=principal, project_id=project_id, data=body
    )
    return ProjectOut.model_validate(project)


@router.delete("/{project_id}", status_code=204)
async def delete_project(
    project_id: uuid.UUID, session: SessionDep, principal: CurrentPrincipal
) -> Response:
    """Soft delete: the project leaves the default list and takes no new experiments; its
    experiments are untouched, its name stays taken. ``POST .../restore`` undoes it."""
    await service.delete_project(session, principal=principal, project_id=project_id)
    return Response(status_code=204)


@router.post(
    "/{project_id}/restore",
    response_model=ProjectOut,
    responses={409: {"description": "the project is not deleted"}},
)
async def restore_project(
    project_id: uuid.UUID, session: SessionDep, principal: CurrentPrincipal
) -> ProjectOut:
    project = await service.restore_project(session, principal=principal, project_id=project_id)
    return ProjectOut.model_validate(project)
