"""Tags: CRUD, and putting them on experiments and taking them off.

Tags belong to a user: slugs and names are unique per owner (so one user's tags never collide
with, or reveal, another's). Tagging keeps ``tags.usage_count`` and the experiment's copy of its
tag slugs (``experiments.tags``, searched) right; the caller holds the experiment's row lock.
Tagging with a tag the owner does not have yet creates it (default colour).
"""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from runyard.experiments import errors
from runyard.experiments.models import Experiment, Tag
from runyard.experiments.repository import get_owned, unique_or_conflict
from runyard.experiments.tracking.query_language.fields import slugify
from runyard.experiments.tracking.repository import tags as repository
from runyard.experiments.tracking.schemas import TagCreate, TagUpdate
from runyard.shared.db import new_id
from runyard.shared.http import ProblemError
from runyard.shared.identity import Principal, require_writer


def tag_slug(tag: str) -> str:
    slug = slugify(tag)[:64].strip("-")
    if not slug:
        raise errors.EmptySlug()
    return slug


def taken(name: str, slug: str) -> dict[str, ProblemError]:
    return {
        "uq_tags_owner_id_slug": errors.SlugTaken(slug),
        "uq_tags_owner_id_name": errors.NameTaken("a tag", name),
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
    async with unique_or_conflict(session, taken(data.name, slug)):
        session.add(tag)
    return tag


async def get_tag(
    session: AsyncSession, *, principal: Principal, tag_id: uuid.UUID, write: bool = False
) -> Tag:
    return await get_owned(session, Tag, tag_id, principal=principal, what="tag", write=write)


async def list_tags(
    session: AsyncSession,
    *,
    principal: Principal,
    limit: int,
    cursor: str | None,
    owner_id: uuid.UUID | None = None,
) -> tuple[list[Tag], str | None]:
    return await repository.list_tags(
        session, principal=principal, limit=limit, cursor=cursor, owner_id=owner_id
    )


async def update_tag(
    session: AsyncSession, *, principal: Principal, tag_id: uuid.UUID, data: TagUpdate
) -> Tag:
    """A renamed slug follows into the owner's experiments."""
    tag = await get_tag(session, principal=principal, tag_id=tag_id, write=True)
    changes = {k: v for k, v in data.model_dump(exclude_unset=True).items() if v is not None}
    old_slug = tag.slug
    async with unique_or_conflict(
        session, taken(changes.get("name", tag.name), changes.get("slug", tag.slug))
    ):
        for key, value in changes.items():
            setattr(tag, key, value)
    if tag.slug != old_slug:
        await repository.replace_slug(session, tag.owner_id, old_slug, tag.slug)
    return tag


async def delete_tag(session: AsyncSession, *, principal: Principal, tag_id: uuid.UUID) -> None:
    tag = await get_tag(session, principal=principal, tag_id=tag_id, write=True)
    await repository.remove_slug(session, tag.owner_id, tag.slug)
    await session.delete(tag)
    await session.flush()


async def find_tag(session: AsyncSession, owner_id: uuid.UUID, tag: str) -> Tag | None:
    """The owner's tag whose slug is the slug of ``tag``, or whose name is ``tag``."""
    return await repository.find_tag(session, owner_id, slug=tag_slug(tag), name=tag)


async def attach(
    session: AsyncSession, *, principal: Principal, experiment: Experiment, tag: str
) -> bool:
    """Tag the experiment; False when it already had the tag (nothing changes)."""
    found = await find_tag(session, experiment.owner_id, tag)
    if found is None:
        name = tag.strip()[:64] or tag_slug(tag)
        await repository.add_tag_if_missing(
            session, owner_id=experiment.owner_id, name=name, slug=tag_slug(tag)
        )
        found = await find_tag(session, experiment.owner_id, tag)
        assert found is not None
    added = await repository.link(
        session, experiment_id=experiment.id, tag_id=found.id, added_by=principal.user_id
    )
    if added:
        await repository.count_use(session, found.id, +1)
        experiment.tags = sorted({*experiment.tags, found.slug})
        await session.flush()
    return added


async def detach(session: AsyncSession, *, experiment: Experiment, tag: str) -> bool:
    """Untag the experiment; False when it did not have the tag."""
    found = await find_tag(session, experiment.owner_id, tag)
    if found is None:
        return False
    removed = await repository.unlink(session, experiment_id=experiment.id, tag_id=found.id)
    if removed:
        await repository.count_use(session, found.id, -1)
        experiment.tags = [t for t in experiment.tags if t != found.slug]
        await session.flush()
    return removed
