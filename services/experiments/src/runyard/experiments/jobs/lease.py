"""Job rows as a lease-based queue: claim, hold (re-lock, renew, honour a cancellation),
finish and fail, and the jobs' events. See ``runner`` for the whole picture.

A job whose worker dies (killed, out of memory, a crash in native code) is claimed again once
its lease expires, and every claim counts in ``attempts``: a job found with
``EXPERIMENTS_JOB_MAX_ATTEMPTS`` claims behind it is failed instead of claimed, so an input that
kills its worker kills at most that many."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from runyard.experiments import users
from runyard.experiments.config import Settings
from runyard.experiments.jobs import files, repository, storage
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
    staged: dict[uuid.UUID, list[files.Row]] = field(default_factory=dict)
    problems: dict[uuid.UUID, files.Problems] = field(default_factory=dict)
    budgets: dict[uuid.UUID, files.Budget] = field(default_factory=dict)
    #: per running job, when (monotonic) and at what percent its last progress event was written
    progress_sent: dict[uuid.UUID, tuple[float, int]] = field(default_factory=dict)
    #: a progress event at most this often per job, unless the progress moved by ``..._step``
    progress_event_interval_s: float = 0.5
    progress_event_step: int = 5

    @property
    def data_dir(self) -> Path:
        return Path(self.settings.data_dir)

    def lease(self) -> timedelta:
        return timedelta(seconds=self.settings.job_lease_s)


class LostJob(Exception):
    """The job was cancelled, finished, or taken over by another worker."""


async def claim(worker: Worker, model: JobModel) -> uuid.UUID | None:
    """The oldest runnable job, now this worker's; None when there is none. Jobs that used up
    their attempts are failed on the way."""
    now = utcnow()
    async with worker.sessionmaker() as session, session.begin():
        while True:
            job = await repository.lock_next_runnable(session, model, now)
            if job is None:
                return None
            if job.attempts < worker.settings.job_max_attempts:
                break
            await give_up(session, worker, job)
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
        await storage.release_files(worker.data_dir, job)
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
    """End the job as failed (nothing of it stays: its own files are removed)."""
    problems = worker.problems.get(job_id)
    async with worker.sessionmaker() as session, session.begin():
        try:
            job = await hold(session, worker, model, job_id)
        except LostJob:
            return
        if job is None:
            return
        if problems is not None and problems.total:
            job.errors = problems.items
            error = f"{problems.total} problem(s) in the input; nothing was imported"
        await record_failure(session, worker, job, error)
    log.warning("experiments.job.failed_recorded", job_id=str(job_id), error=error[:200])


async def give_up(session: AsyncSession, worker: Worker, job: Job) -> None:
    """Fail a job whose worker died ``attempts`` times instead of claiming it again."""
    error = (
        f"The job was started {job.attempts} times and its worker stopped each time (at most "
        f"{worker.settings.job_max_attempts}: EXPERIMENTS_JOB_MAX_ATTEMPTS); it is not retried."
    )
    await record_failure(session, worker, job, error)
    await session.flush()
    log.warning("experiments.job.attempts_exhausted", job_id=str(job.id), attempts=job.attempts)


async def record_failure(session: AsyncSession, worker: Worker, job: Job, error: str) -> None:
    finish(job, None, status="failed")
    job.error_message = error
    await storage.release_files(worker.data_dir, job)
    fields = await job_fields(session, job)
    payload: DatasetGenerationFailed | DatasetImportFailed
    if isinstance(job, DatasetGeneration):
        payload = DatasetGenerationFailed(**fields, error=error)
    else:
        payload = DatasetImportFailed(**fields, error=error, errors=job.errors)
    await emit(session, payload, subject=job.id)
