"""Putting tags on experiments and taking them off, keeping ``tags.usage_count`` and the
experiment's copy of its tag slugs (``experiments.tags``, searched) right.

The caller holds the experiment's row lock. Tags belong to the experiment's owner; tagging with
a tag the owner does not have yet creates it (default colour).
"""

from __future__ import annotations

from sqlalchemy import delete, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from runyard.experiments.models import Experiment, ExperimentTag, Tag
from runyard.experiments.query_language import slugify
from runyard.shared.db import new_id, utcnow
from runyard.shared.http import ProblemError
from runyard.shared.identity import Principal

DEFAULT_COLOR = "#6b7280"


def tag_slug(tag: str) -> str:
    slug = slugify(tag)[:64].strip("-")
    if not slug:
        raise ProblemError(
            422,
            "Validation failed",
            "A tag needs at least one letter or digit.",
            errors=[{"loc": ["path", "tag"], "msg": "empty slug", "type": "value_error"}],
        )
    return slug


async def find_tag(session: AsyncSession, owner_id: object, tag: str) -> Tag | None:
    """The owner's tag whose slug is the slug of ``tag``, or whose name is ``tag``."""
    slug = tag_slug(tag)
    rows = (
        await session.scalars(
            select(Tag).where(Tag.owner_id == owner_id, or_(Tag.slug == slug, Tag.name == tag))
        )
    ).all()
    return next((t for t in rows if t.slug == slug), rows[0] if rows else None)


async def attach(
    session: AsyncSession, *, principal: Principal, experiment: Experiment, tag: str
) -> bool:
    """Tag the experiment; False when it already had the tag (nothing changes)."""
    found = await find_tag(session, experiment.owner_id, tag)
    if found is None:
        name = tag.strip()[:64] or tag_slug(tag)
        await session.execute(
            insert(Tag)
            .values(
                id=new_id(),
                owner_id=experiment.owner_id,
                name=name,
                slug=tag_slug(tag),
                color=DEFAULT_COLOR,
                usage_count=0,
            )
            .on_conflict_do_nothing()
        )
        found = await find_tag(session, experiment.owner_id, tag)
        assert found is not None
    added = (
        await session.execute(
            insert(ExperimentTag)
            .values(experiment_id=experiment.id, tag_id=found.id, added_by=principal.user_id)
            .on_conflict_do_nothing(index_elements=["experiment_id", "tag_id"])
            .returning(ExperimentTag.id)
        )
    ).first() is not None
    if added:
        await session.execute(
            update(Tag)
            .where(Tag.id == found.id)
            .values(usage_count=Tag.usage_count + 1, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        experiment.tags = sorted({*experiment.tags, found.slug})
        await session.flush()
    return added


async def detach(session: AsyncSession, *, experiment: Experiment, tag: str) -> bool:
    """Untag the experiment; False when it did not have the tag."""
    found = await find_tag(session, experiment.owner_id, tag)
    if found is None:
        return False
    removed = (
        await session.execute(
            delete(ExperimentTag)
            .where(ExperimentTag.experiment_id == experiment.id, ExperimentTag.tag_id == found.id)
            .returning(ExperimentTag.id)
        )
    ).first() is not None
    if removed:
        await session.execute(
            update(Tag)
            .where(Tag.id == found.id)
            .values(usage_count=Tag.usage_count - 1, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        experiment.tags = [t for t in experiment.tags if t != found.slug]
        await session.flush()
    return removed
