"""Tag CRUD. Tags belong to a user: slugs and names are unique per owner (so one user's tags
never collide with, or reveal, another's)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import func, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from runyard.experiments import access, pagination, repository
from runyard.experiments.models import Experiment, Tag
from runyard.experiments.schemas import TagCreate, TagUpdate
from runyard.experiments.tagging import tag_slug
from runyard.shared.db import new_id
from runyard.shared.identity import Principal, require_writer


def taken(name: str, slug: str) -> dict[str, repository.ProblemError]:
    return {
        "uq_tags_owner_id_slug": repository.conflict(
            f"You already have a tag with the slug {slug!r}.", field="slug"
        ),
        "uq_tags_owner_id_name": repository.conflict(
            f"You already have a tag named {name!r}.", field="name"
        ),
    }


async def create_tag(session: AsyncSession, *, principal: Principal, data: TagCreate) -> Tag:
    require_writer(principal)
    slug = data.slug or tag_slug(data.name)
    tag = Tag(
        id=new_id(),
        owner_id=principal.user_id,
        name=data.name,
        slug=slug,
        color=data.color,
        usage_count=0,
    )
    async with repository.unique_or_conflict(session, taken(data.name, slug)):
        session.add(tag)
    return tag


async def get_tag(
    session: AsyncSession, *, principal: Principal, tag_id: uuid.UUID, write: bool = False
) -> Tag:
    if write:
        require_writer(principal)
    tag = await session.get(Tag, tag_id, populate_existing=True, with_for_update=write)
    (access.check_write if write else access.check_read)(principal, tag, "tag")
    assert tag is not None
    return tag


async def list_tags(
    session: AsyncSession,
    *,
    principal: Principal,
    limit: int,
    cursor: str | None,
    owner_id: uuid.UUID | None = None,
) -> tuple[Sequence[Tag], str | None]:
    """Tags by slug (then id: admins see several owners' tags with one slug)."""
    query = select(Tag)
    scope = access.owner_scope(Tag.owner_id, principal, owner_id)
    if scope is not None:
        query = query.where(scope)
    after = pagination.decode_cursor(cursor, kind="tags")
    if after is not None:
        try:
            query = query.where(tuple_(Tag.slug, Tag.id) > (str(after["s"]), uuid.UUID(after["i"])))
        except (KeyError, ValueError, TypeError) as exc:
            raise pagination.invalid_cursor() from exc
    rows = (await session.scalars(query.order_by(Tag.slug, Tag.id).limit(limit + 1))).all()
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = pagination.encode_cursor(
            {"k": "tags", "s": rows[-1].slug, "i": str(rows[-1].id)}
        )
    return rows, next_cursor


async def update_tag(
    session: AsyncSession, *, principal: Principal, tag_id: uuid.UUID, data: TagUpdate
) -> Tag:
    tag = await get_tag(session, principal=principal, tag_id=tag_id, write=True)
    changes = {k: v for k, v in data.model_dump(exclude_unset=True).items() if v is not None}
    old_slug = tag.slug
    async with repository.unique_or_conflict(
        session, taken(changes.get("name", tag.name), changes.get("slug", tag.slug))
    ):
        for key, value in changes.items():
            setattr(tag, key, value)
    if tag.slug != old_slug:
        # the owner's experiments carry the slug in their searchable copy of their tags
        await session.execute(
            update(Experiment)
            .where(Experiment.owner_id == tag.owner_id, Experiment.tags.contains([old_slug]))
            .values(tags=func.array_replace(Experiment.tags, old_slug, tag.slug))
            .execution_options(synchronize_session=False)
        )
    return tag


async def delete_tag(session: AsyncSession, *, principal: Principal, tag_id: uuid.UUID) -> None:
    tag = await get_tag(session, principal=principal, tag_id=tag_id, write=True)
    await session.execute(
        update(Experiment)
        .where(Experiment.owner_id == tag.owner_id, Experiment.tags.contains([tag.slug]))
        .values(tags=func.array_remove(Experiment.tags, tag.slug))
        .execution_options(synchronize_session=False)
    )
    await session.delete(tag)
    await session.flush()
