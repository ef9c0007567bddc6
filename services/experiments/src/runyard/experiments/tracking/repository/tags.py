"""Queries of tags and of their links to experiments (with the usage counts, and the
experiments' searchable copy of their tag slugs)."""

from __future__ import annotations

import uuid

from sqlalchemy import delete, func, or_, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from runyard.experiments import access
from runyard.experiments.models import Experiment, ExperimentTag, Tag
from runyard.experiments.tracking.schemas import DEFAULT_COLOR
from runyard.shared.db import new_id, utcnow
from runyard.shared.identity import Principal
from runyard.shared.pagination import cut, decode_cursor


async def find_tag(
    session: AsyncSession, owner_id: uuid.UUID, *, slug: str, name: str
) -> Tag | None:
    """The owner's tag with this slug, else the one with this name."""
    rows = (
        await session.scalars(
            select(Tag).where(Tag.owner_id == owner_id, or_(Tag.slug == slug, Tag.name == name))
        )
    ).all()
    return next((t for t in rows if t.slug == slug), rows[0] if rows else None)


async def add_tag_if_missing(
    session: AsyncSession, *, owner_id: uuid.UUID, name: str, slug: str
) -> None:
    """The owner's tag, in the default colour, unless one with this slug or name exists."""
    await session.execute(
        insert(Tag)
        .values(
            id=new_id(),
            owner_id=owner_id,
            name=name,
            slug=slug,
            color=DEFAULT_COLOR,
            usage_count=0,
        )
        .on_conflict_do_nothing()
    )


async def link(
    session: AsyncSession, *, experiment_id: uuid.UUID, tag_id: uuid.UUID, added_by: uuid.UUID
) -> bool:
    """Link the tag to the experiment; False when it was linked already."""
    added = await session.execute(
        insert(ExperimentTag)
        .values(experiment_id=experiment_id, tag_id=tag_id, added_by=added_by)
        .on_conflict_do_nothing(index_elements=["experiment_id", "tag_id"])
        .returning(ExperimentTag.id)
    )
    return added.first() is not None


async def unlink(session: AsyncSession, *, experiment_id: uuid.UUID, tag_id: uuid.UUID) -> bool:
    """Unlink the tag from the experiment; False when it was not linked."""
    removed = await session.execute(
        delete(ExperimentTag)
        .where(ExperimentTag.experiment_id == experiment_id, ExperimentTag.tag_id == tag_id)
        .returning(ExperimentTag.id)
    )
    return removed.first() is not None


async def count_use(session: AsyncSession, tag_id: uuid.UUID, delta: int) -> None:
    await session.execute(
        update(Tag)
        .where(Tag.id == tag_id)
        .values(usage_count=Tag.usage_count + delta, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )


def slug_key(tag: Tag) -> tuple[str, uuid.UUID]:
    return tag.slug, tag.id


async def list_tags(
    session: AsyncSession,
    *,
    principal: Principal,
    limit: int,
    cursor: str | None,
    owner_id: uuid.UUID | None = None,
) -> tuple[list[Tag], str | None]:
    """Tags by slug (then id: admins see several owners' tags with one slug)."""
    query = select(Tag)
    scope = access.owner_scope(Tag.owner_id, principal, owner_id)
    if scope is not None:
        query = query.where(scope)
    after = decode_cursor(cursor, "tags", str, uuid.UUID)
    if after is not None:
        query = query.where(tuple_(Tag.slug, Tag.id) > after)
    rows = (await session.scalars(query.order_by(Tag.slug, Tag.id).limit(limit + 1))).all()
    return cut(rows, limit, "tags", slug_key)


async def replace_slug(session: AsyncSession, owner_id: uuid.UUID, old: str, new: str) -> None:
    """The owner's experiments carry their tags' slugs (searched): rename one there."""
    await session.execute(
        update(Experiment)
        .where(Experiment.owner_id == owner_id, Experiment.tags.contains([old]))
        .values(tags=func.array_replace(Experiment.tags, old, new))
        .execution_options(synchronize_session=False)
    )


async def remove_slug(session: AsyncSession, owner_id: uuid.UUID, slug: str) -> None:
    await session.execute(
        update(Experiment)
        .where(Experiment.owner_id == owner_id, Experiment.tags.contains([slug]))
        .values(tags=func.array_remove(Experiment.tags, slug))
        .execution_options(synchronize_session=False)
    )
