from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from runyard.experiments.models import Experiment


async def get_experiment_for_update(
    session: AsyncSession, experiment_id: uuid.UUID
) -> Experiment | None:
    result = await session.execute(
        select(Experiment).where(Experiment.id == experiment_id).with_for_update()
    )
    return result.scalar_one_or_none()


async def get_experiment(session: AsyncSession, experiment_id: uuid.UUID) -> Experiment | None:
    return await session.get(Experiment, experiment_id)
