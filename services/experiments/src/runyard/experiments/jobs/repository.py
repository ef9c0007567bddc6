"""Queries of job rows as a lease-based queue (reading, listing and locking one job for its
owner is the service-wide ``runyard.experiments.repository``)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from runyard.experiments.models import DatasetGeneration, DatasetImport
from runyard.experiments.repository import by_id

Job = DatasetGeneration | DatasetImport
JobModel = type[DatasetGeneration] | type[DatasetImport]


async def lock_next_runnable(session: AsyncSession, model: JobModel, now: datetime) -> Job | None:
    """The oldest job that is pending, or running with an expired lease; locked, skipping the
    jobs other workers are claiming right now."""
    table: Any = model
    job: Job | None = (
        await session.execute(
            select(table)
            .where(
                table.status.in_(("pending", "running")),
                or_(table.locked_until.is_(None), table.locked_until < now),
            )
            .order_by(table.created_at)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
    ).scalar_one_or_none()
    return job


async def lock_job(session: AsyncSession, model: JobModel, job_id: uuid.UUID) -> Job:
    job: Job = (await session.execute(by_id(model, job_id, lock=True))).scalar_one()
    return job
