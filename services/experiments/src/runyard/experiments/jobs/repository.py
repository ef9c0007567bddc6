"""Queries of job rows as a lease-based queue (reading, listing and locking one job for its
owner is the service-wide ``runyard.experiments.repository``)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select, text
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
    job: Job = (await session.execute(by_id(model, lock=True), {"row_id": job_id})).scalar_one()
    return job


async def lock_owner(session: AsyncSession, owner_id: uuid.UUID) -> None:
    """Serialise the creation of one owner's jobs until the transaction ends (their limits are
    counted, then a job is added: two requests at once must not both pass)."""
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
        {"key": f"experiments.jobs:{owner_id}"},
    )


async def active_jobs(session: AsyncSession, owner_id: uuid.UUID) -> int:
    """The owner's pending and running jobs, generations and imports together."""
    total = 0
    for table in (DatasetGeneration, DatasetImport):
        total += (
            await session.execute(
                select(func.count())
                .select_from(table)
                .where(table.owner_id == owner_id, table.status.in_(("pending", "running")))
            )
        ).scalar_one()
    return total


async def bytes_stored(session: AsyncSession, owner_id: uuid.UUID) -> int:
    """What the files of the owner's jobs weigh (projected for generations not yet done)."""
    total = 0
    for table in (DatasetGeneration, DatasetImport):
        total += (
            await session.execute(
                select(func.coalesce(func.sum(table.bytes_stored), 0)).where(
                    table.owner_id == owner_id
                )
            )
        ).scalar_one()
    return int(total)


async def lock_jobs_of_dataset(session: AsyncSession, dataset_id: uuid.UUID) -> list[Job]:
    """The jobs that made the dataset and still hold files, locked."""
    found: list[Job] = []
    table: Any
    for table in (DatasetGeneration, DatasetImport):
        rows = await session.execute(
            select(table)
            .where(table.dataset_id == dataset_id, table.bytes_stored > 0)
            .with_for_update()
        )
        found += rows.scalars().all()
    return found
