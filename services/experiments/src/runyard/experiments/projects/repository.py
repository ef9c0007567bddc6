"""Queries of projects."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from runyard.experiments import access
from runyard.experiments.models import Project
from runyard.experiments.repository import newest_first
from runyard.shared.identity import Principal


async def by_name(session: AsyncSession, owner_id: uuid.UUID, name: str) -> Project | None:
    found: Project | None = await session.scalar(
        select(Project).where(Project.owner_id == owner_id, Project.name == name)
    )
    return found


async def list_projects(
    session: AsyncSession,
    *,
    principal: Principal,
    limit: int,
    cursor: str | None,
    stage: str,
    owner_id: uuid.UUID | None,
    name: str | None,
) -> tuple[list[Project], str | None]:
    query = select(Project)
    scope = access.owner_scope(Project.owner_id, principal, owner_id)
    if scope is not None:
        query = query.where(scope)
    if stage != "all":
        query = query.where(Project.lifecycle_stage == stage)
    if name is not None:
        query = query.where(Project.name == name)
    return await newest_first(session, query, Project, kind="projects", limit=limit, cursor=cursor)
