"""Queries of experiments beyond reading one (``runyard.experiments.repository.get_owned``)."""

from __future__ import annotations

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from runyard.experiments.models import Experiment, ExperimentTag, Tag
from runyard.shared.db import utcnow


async def delete_experiment(session: AsyncSession, experiment: Experiment) -> None:
    """Delete the experiment with its runs and tag links; its tags' usage counts go down."""
    await session.execute(
        update(Tag)
        .where(
            Tag.id.in_(
                select(ExperimentTag.tag_id).where(ExperimentTag.experiment_id == experiment.id)
            )
        )
        .values(usage_count=Tag.usage_count - 1, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    await session.execute(delete(Experiment).where(Experiment.id == experiment.id))
    session.expunge(experiment)
