"""Job rows as a lease-based queue: claim, hold (re-lock, renew, honour a cancellation),
finish and fail, and the jobs' events. See ``runner`` for the whole picture."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from runyard.experiments import users
from runyard.experiments.config import Settings
from runyard.experiments.datasets.schemas import SignalIn
from runyard.experiments.jobs import files, repository
from runyard.experiments.jobs.repository import Job, JobModel
from runyard.experiments.models import DatasetGeneration
from runyard.shared.contracts.experiments import (
    DatasetGenerationFailed,
    DatasetImportFailed,
)
from runyard.shared.db import utcnow
from runyard.shared.logging import get_logger
from runyard.shared.outbox import emit

log = get_logger(__name__)


@dataclass
class Worker:
    sessionmaker: async_sessionmaker[AsyncSession]
    settings: Settings
    worker_id: str
    #: parsed files of the import this worker is running (job id -> signals so far)
    staged: dict[uuid.UUID, list[SignalIn]] = field(default_factory=dict)
    problems: dict[uuid.UUID, files.Problems] = field(default_factory=dict)

    @property
    def data_dir(self) -> Path:
        return Path(self.settings.data_dir)

    def lease(self) -> timedelta:
        return timedelta(seconds=self.settings.job_lease_s)


class LostJob(Exception):
    """The job was cancelled, finished, or taken over by another worker."""


async def claim(worker: Worker, model: JobModel) -> uuid.UUID | None:
    now = utcnow()
    async with worker.sessionmaker() as session, session.begin():
        job = await repository.lock_next_runnable(session, model, now)
        if job is None:
            return None
        resumed = job.status == "running"
        job.status = "running"
        job.celery_task_id = worker.worker_id
        job.locked_until = now + worker.lease()
        job.attempts += 1
        job.started_at = job.started_at or now
        log.info(
            "experiments.job.claimed",
            job=model.__tablename__,
            job_id=str(job.id),
            resumed=resumed,
            items_done=job.items_done,
        )
        return job.id


async def hold(session: AsyncSession, worker: Worker, model: JobModel, job_id: uuid.UUID) -> Any:
    """The job, locked and its lease renewed. A requested cancellation happens here: then the
    result is None (the caller lets the transaction commit, then stops). Another worker's job,
    or a finished one: ``LostJob``."""
    job = await repository.lock_job(session, model, job_id)
    if job.status != "running" or job.celery_task_id != worker.worker_id:
        raise LostJob(job.status)
    if job.cancel_requested:
        job.status = "cancelled"
        job.ended_at = utcnow()
        job.locked_until = None
        if isinstance(job, DatasetGeneration) and job.output_path:
            await asyncio.to_thread(shutil.rmtree, worker.data_dir / job.output_path, True)
        log.info("experiments.job.cancelled", job_id=str(job.id))
        return None
    job.locked_until = utcnow() + worker.lease()
    return job


def finish(job: Job, dataset_id: uuid.UUID | None, status: str = "completed") -> None:
    now = utcnow()
    job.status = status
    job.dataset_id = dataset_id
    job.progress = 100 if status == "completed" else job.progress
    job.ended_at = now
    job.locked_until = None
    job.duration_seconds = (now - job.started_at).total_seconds() if job.started_at else None


async def job_fields(session: AsyncSession, job: Job) -> dict[str, Any]:
    """The fields every job event carries."""
    return {
        "job_id": job.id,
        "name": job.name,
        "owner_id": job.owner_id,
        **await users.owner_fields(session, job.owner_id),
        "duration_seconds": job.duration_seconds,
    }


async def fail(worker: Worker, model: JobModel, job_id: uuid.UUID, *, error: str) -> None:
    """End the job as failed (nothing of it stays: generated files are removed)."""
    problems = worker.problems.get(job_id)
    async with worker.sessionmaker() as session, session.begin():
        try:
            job = await hold(session, worker, model, job_id)
        except LostJob:
            return
        if job is None:
            return
        finish(job, None, status="failed")
        job.error_message = error
        if problems is not None and problems.total:
            job.errors = problems.items
            job.error_message = f"{problems.total} problem(s) in the input; nothing was imported"
        fields = await job_fields(session, job)
        if isinstance(job, DatasetGeneration):
            if job.output_path:
                await asyncio.to_thread(shutil.rmtree, worker.data_dir / job.output_path, True)
            payload: DatasetGenerationFailed | DatasetImportFailed = DatasetGenerationFailed(
                **fields, error=job.error_message
            )
        else:
            payload = DatasetImportFailed(**fields, error=job.error_message, errors=job.errors)
        await emit(session, payload, subject=job.id)
    log.warning("experiments.job.failed_recorded", job_id=str(job_id), error=error[:200])
