"""Project use cases: create, read, list, update, soft delete and restore, and resolving the
project an experiment names. They change rows and write outbox events in the caller's
transaction; they never commit.

Deleting a project is soft, as MLflow's experiment delete is: ``lifecycle_stage`` becomes
``deleted``, lists hide it (unless asked for ``deleted`` or ``all``), it takes no new experiments
and no changes, and its name stays taken; its experiments keep their ``project_id`` and are
otherwise untouched. ``restore`` makes it active again.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from runyard.experiments import errors
from runyard.experiments.models import Project
from runyard.experiments.projects import repository
from runyard.experiments.projects.schemas import ProjectCreate, ProjectUpdate
from runyard.experiments.repository import get_owned, unique_or_conflict
from runyard.experiments.schemas import changed_fields, requested_changes
from runyard.shared.contracts.experiments import (
    ProjectCreated,
    ProjectDeleted,
    ProjectRestored,
    ProjectUpdated,
)
from runyard.shared.db import new_id, utcnow
from runyard.shared.events import EventPayload
from runyard.shared.http import ProblemError
from runyard.shared.identity import Principal, require_writer
from runyard.shared.outbox import emit

NOT_NULLABLE = {"name", "tags"}


def name_taken(name: str) -> dict[str, ProblemError]:
    return {"uq_projects_owner_id_name": errors.NameTaken("a project", name)}


def event_fields(project: Project) -> dict[str, Any]:
    return {
        "project_id": project.id,
        "owner_id": project.owner_id,
        "name": project.name,
        "description": project.description,
        "tags": project.tags,
        "lifecycle_stage": project.lifecycle_stage,
    }


async def announce(session: AsyncSession, project: Project, payload: EventPayload) -> None:
    await emit(session, payload, subject=project.id, sequence=project.version)


async def create_project(
    session: AsyncSession, *, principal: Principal, data: ProjectCreate
) -> Project:
    require_writer(principal)
    project = Project(
        id=new_id(),
        owner_id=principal.user_id,
        name=data.name,
        description=data.description,
        tags=dict(data.tags),
        lifecycle_stage="active",
        version=1,
    )
    async with unique_or_conflict(session, name_taken(data.name)):
        session.add(project)
    await announce(session, project, ProjectCreated(**event_fields(project)))
    return project


async def get_project(
    session: AsyncSession, *, principal: Principal, project_id: uuid.UUID, write: bool = False
) -> Project:
    """Deleted projects too (their ``lifecycle_stage`` says so)."""
    return await get_owned(
        session, Project, project_id, principal=principal, what="project", write=write
    )


async def list_projects(
    session: AsyncSession,
    *,
    principal: Principal,
    limit: int,
    cursor: str | None,
    stage: str = "active",
    owner_id: uuid.UUID | None = None,
    name: str | None = None,
) -> tuple[list[Project], str | None]:
    """Newest first."""
    return await repository.list_projects(
        session,
        principal=principal,
        limit=limit,
        cursor=cursor,
        stage=stage,
        owner_id=owner_id,
        name=name,
    )


async def update_project(
    session: AsyncSession, *, principal: Principal, project_id: uuid.UUID, data: ProjectUpdate
) -> Project:
    """Writes (and announces) only what changed; 409 on a deleted project."""
    project = await get_project(session, principal=principal, project_id=project_id, write=True)
    changes = requested_changes(data, not_nullable=NOT_NULLABLE)
    changed = changed_fields(project, changes)
    if not changed:
        return project
    if project.lifecycle_stage == "deleted":
        raise errors.ProjectDeleted()
    async with unique_or_conflict(session, name_taken(changes.get("name", ""))):
        for key in changed:
            setattr(project, key, changes[key])
        project.version += 1
    await announce(session, project, ProjectUpdated(**event_fields(project), changed=changed))
    return project


async def delete_project(
    session: AsyncSession, *, principal: Principal, project_id: uuid.UUID
) -> Project:
    """Soft delete; deleting a deleted project changes nothing."""
    project = await get_project(session, principal=principal, project_id=project_id, write=True)
    if project.lifecycle_stage == "deleted":
        return project
    project.lifecycle_stage = "deleted"
    project.deleted_at = utcnow()
    project.version += 1
    await session.flush()
    await announce(session, project, ProjectDeleted(**event_fields(project)))
    return project


async def restore_project(
    session: AsyncSession, *, principal: Principal, project_id: uuid.UUID
) -> Project:
    """409 if the project is not deleted."""
    project = await get_project(session, principal=principal, project_id=project_id, write=True)
    if project.lifecycle_stage != "deleted":
        raise errors.ProjectActive()
    project.lifecycle_stage = "active"
    project.deleted_at = None
    project.version += 1
    await session.flush()
    await announce(session, project, ProjectRestored(**event_fields(project)))
    return project


async def resolve_project(
    session: AsyncSession, principal: Principal, owner_id: uuid.UUID, reference: str
) -> uuid.UUID:
    """The id of the active project ``reference`` (its id, else its name) of ``owner_id`` that an
    experiment of that owner may join (an admin may name any owner's by id); else 422."""
    project: Project | None = None
    try:
        project_id = uuid.UUID(reference)
    except ValueError:
        project = await repository.by_name(session, owner_id, reference)
    else:
        project = await session.get(Project, project_id)
        if project is not None and project.owner_id != owner_id and not principal.is_admin:
            project = None
    if project is None or project.lifecycle_stage != "active":
        raise errors.UnknownProject()
    return project.id
