"""Queries of the model registry."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from runyard.experiments import access
from runyard.experiments.artifacts.repository import Holder
from runyard.experiments.models import Artifact
from runyard.experiments.registry.models import ModelAlias, ModelVersion, RegisteredModel
from runyard.experiments.repository import newest_first
from runyard.shared.identity import Principal
from runyard.shared.pagination import cut, decode_cursor


def like_escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def by_name(
    session: AsyncSession, owner_id: uuid.UUID, name: str, *, lock: bool = False
) -> RegisteredModel | None:
    query = select(RegisteredModel).where(
        RegisteredModel.owner_id == owner_id, RegisteredModel.name == name
    )
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    found: RegisteredModel | None = await session.scalar(query)
    return found


def tag_condition(tag: str) -> Any:
    """``key`` (the model has the tag) or ``key=value``."""
    key, sep, value = tag.partition("=")
    if sep:
        return RegisteredModel.tags.contains({key: value})
    return RegisteredModel.tags.has_key(key)


async def list_models(
    session: AsyncSession,
    *,
    principal: Principal,
    limit: int,
    cursor: str | None,
    owner_id: uuid.UUID | None = None,
    name: str | None = None,
    name_contains: str | None = None,
    name_prefix: str | None = None,
    tags: list[str] | None = None,
    alias: str | None = None,
) -> tuple[list[RegisteredModel], str | None]:
    """Newest first; every filter given must hold."""
    query = select(RegisteredModel)
    scope = access.owner_scope(RegisteredModel.owner_id, principal, owner_id)
    if scope is not None:
        query = query.where(scope)
    if name is not None:
        query = query.where(RegisteredModel.name == name)
    if name_contains:
        pattern = f"%{like_escaped(name_contains)}%"
        query = query.where(RegisteredModel.name.ilike(pattern, escape="\\"))
    if name_prefix:
        query = query.where(func.starts_with(RegisteredModel.name, name_prefix))
    for tag in tags or []:
        query = query.where(tag_condition(tag))
    if alias is not None:
        query = query.where(
            select(ModelAlias.model_id)
            .where(ModelAlias.model_id == RegisteredModel.id, ModelAlias.alias == alias)
            .exists()
        )
    return await newest_first(
        session, query, RegisteredModel, kind="models", limit=limit, cursor=cursor
    )


async def aliases_by_model(
    session: AsyncSession, model_ids: list[uuid.UUID]
) -> dict[uuid.UUID, dict[str, int]]:
    """alias -> version number, for each of the models."""
    found: dict[uuid.UUID, dict[str, int]] = {m: {} for m in model_ids}
    if not model_ids:
        return found
    rows = await session.execute(
        select(ModelAlias.model_id, ModelAlias.alias, ModelVersion.version)
        .join(ModelVersion, ModelVersion.id == ModelAlias.version_id)
        .where(ModelAlias.model_id.in_(model_ids))
        .order_by(ModelAlias.alias)
    )
    for model_id, alias, version in rows:
        found[model_id][alias] = version
    return found


async def aliases_by_version(
    session: AsyncSession, version_ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[str]]:
    found: dict[uuid.UUID, list[str]] = {v: [] for v in version_ids}
    if not version_ids:
        return found
    rows = await session.execute(
        select(ModelAlias.version_id, ModelAlias.alias)
        .where(ModelAlias.version_id.in_(version_ids))
        .order_by(ModelAlias.alias)
    )
    for version_id, alias in rows:
        found[version_id].append(alias)
    return found


async def aliases_of(session: AsyncSession, version_id: uuid.UUID) -> list[str]:
    return (await aliases_by_version(session, [version_id]))[version_id]


async def version(
    session: AsyncSession, model_id: uuid.UUID, number: int, *, lock: bool = False
) -> ModelVersion | None:
    query = select(ModelVersion).where(
        ModelVersion.model_id == model_id, ModelVersion.version == number
    )
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    found: ModelVersion | None = await session.scalar(query)
    return found


async def version_by_alias(
    session: AsyncSession, model_id: uuid.UUID, alias: str
) -> ModelVersion | None:
    found: ModelVersion | None = await session.scalar(
        select(ModelVersion)
        .join(ModelAlias, ModelAlias.version_id == ModelVersion.id)
        .where(ModelAlias.model_id == model_id, ModelAlias.alias == alias)
    )
    return found


def version_key(row: ModelVersion) -> tuple[int]:
    return (row.version,)


async def list_versions(
    session: AsyncSession,
    model_id: uuid.UUID,
    *,
    limit: int,
    cursor: str | None,
    status: str | None = None,
    archived: bool = False,
    experiment_id: uuid.UUID | None = None,
) -> tuple[list[ModelVersion], str | None]:
    """Highest version first; archived versions only with ``archived``."""
    query = select(ModelVersion).where(ModelVersion.model_id == model_id)
    if not archived:
        query = query.where(ModelVersion.archived_at.is_(None))
    if status is not None:
        query = query.where(ModelVersion.status == status)
    if experiment_id is not None:
        query = query.where(ModelVersion.experiment_id == experiment_id)
    after = decode_cursor(cursor, "model_versions", int)
    if after is not None:
        query = query.where(tuple_(ModelVersion.version) < after)
    rows = (
        await session.scalars(query.order_by(ModelVersion.version.desc()).limit(limit + 1))
    ).all()
    return cut(rows, limit, "model_versions", version_key)


async def latest_versions(session: AsyncSession, model_id: uuid.UUID) -> list[ModelVersion]:
    """The highest non-archived version (MLflow's latest versions, all stages being "None")."""
    found = await session.scalar(
        select(ModelVersion)
        .where(ModelVersion.model_id == model_id, ModelVersion.archived_at.is_(None))
        .order_by(ModelVersion.version.desc())
        .limit(1)
    )
    return [found] if found is not None else []


async def artifact_files(session: AsyncSession, holder: Holder, path: str) -> list[Artifact]:
    """The holder's file at ``path``, else its files under ``path/`` ('' : every file), in path
    order."""
    if path:
        exact = await session.scalar(select(Artifact).where(holder.owns(), Artifact.path == path))
        if exact is not None:
            return [exact]
    query = select(Artifact).where(holder.owns())
    if path:
        query = query.where(func.starts_with(Artifact.path, f"{path}/"))
    return list((await session.scalars(query.order_by(Artifact.path.collate("C")))).all())
