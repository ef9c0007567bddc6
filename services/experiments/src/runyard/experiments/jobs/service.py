"""Dataset generation and import jobs: create, read, cancel. The work itself is done by the
``dataset-jobs`` worker (``runner``), which claims job rows with ``FOR UPDATE SKIP LOCKED``.

Job statuses: ``pending`` → ``running`` → ``completed | failed``; ``cancelled`` from
``pending`` at once, from ``running`` when the worker sees ``cancel_requested`` (between steps).

Limits, each a 422 naming what the request would take and the limit: a generation's samples
(signals times samples per signal, ``EXPERIMENTS_GENERATION_MAX_SAMPLES``), the bytes of signal
files a user's jobs hold (``EXPERIMENTS_USER_QUOTA_BYTES``) and a user's pending and running
jobs (``EXPERIMENTS_USER_MAX_ACTIVE_JOBS``). What one import may read is the worker's limit
(``files``).
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from runyard.experiments import errors
from runyard.experiments.config import Settings
from runyard.experiments.datasets.service import check_name_free
from runyard.experiments.jobs import repository, signal_model, storage
from runyard.experiments.jobs.repository import Job, JobModel
from runyard.experiments.jobs.schemas import (
    MAX_GENERATED_SIGNALS,
    GenerationCreate,
    ImportFromPath,
)
from runyard.experiments.models import DatasetGeneration, DatasetImport
from runyard.experiments.repository import get_owned, list_owned
from runyard.shared.db import new_id, utcnow
from runyard.shared.identity import Principal, require_writer
from runyard.shared.logging import get_logger

log = get_logger(__name__)

WHAT = {DatasetGeneration: "dataset generation", DatasetImport: "dataset import"}


def new_job_fields() -> dict[str, Any]:
    """Where every job starts."""
    return {
        "status": "pending",
        "progress": 0,
        "items_done": 0,
        "attempts": 0,
        "cancel_requested": False,
        "errors": [],
    }


async def check_limits(
    session: AsyncSession, settings: Settings, owner_id: uuid.UUID, size: int
) -> None:
    """Room for one more job of the owner holding ``size`` bytes of files (the owner's job
    creations wait for each other from here to the end of the transaction)."""
    await repository.lock_owner(session, owner_id)
    active = await repository.active_jobs(session, owner_id)
    if active >= settings.user_max_active_jobs:
        raise errors.TooManyActiveJobs(active, settings.user_max_active_jobs)
    used = await repository.bytes_stored(session, owner_id)
    if used + size > settings.user_quota_bytes:
        raise errors.QuotaExceeded(size, used, settings.user_quota_bytes)


async def create_generation(
    session: AsyncSession, *, principal: Principal, data: GenerationCreate, settings: Settings
) -> DatasetGeneration:
    require_writer(principal)
    specs = signal_model.plan(data.fault_classes, data.severities, data.signals_per_combination)
    if len(specs) > MAX_GENERATED_SIGNALS:
        raise errors.TooManySignals(len(specs), MAX_GENERATED_SIGNALS)
    samples = storage.samples_per_signal(data.sample_rate_hz, data.duration_s)
    if len(specs) * samples > settings.generation_max_samples:
        raise errors.TooManySamples(len(specs), samples, settings.generation_max_samples)
    dataset_name = data.dataset_name or data.name
    await check_name_free(session, principal.user_id, dataset_name)
    size = storage.generation_bytes(len(specs), samples)
    await check_limits(session, settings, principal.user_id, size)
    job_id = new_id()
    config: dict[str, Any] = {
        **data.model_dump(),
        "dataset_name": dataset_name,
        "seed": data.seed if data.seed is not None else int(new_id().int % 2**31),
    }
    job = DatasetGeneration(
        id=job_id,
        owner_id=principal.user_id,
        name=data.name,
        config=config,
        num_signals=len(specs),
        num_faults=len([f for f in data.fault_classes if f != "normal"]),
        output_path=f"generations/{job_id}",
        bytes_stored=size,
        **new_job_fields(),
    )
    session.add(job)
    await session.flush()
    log.info("experiments.generation.created", job_id=str(job.id), signals=len(specs))
    return job


def validated_fields(fields: dict[str, Any], *, path: str) -> ImportFromPath:
    """The form fields of an upload as an import request (422 naming the bad field)."""
    try:
        return ImportFromPath.model_validate({**fields, "path": path})
    except ValidationError as exc:
        raise errors.InvalidBody("The form fields did not match the expected shape.", exc) from None


async def create_import(
    session: AsyncSession,
    *,
    principal: Principal,
    data: ImportFromPath | None,
    upload: tuple[str, bytes, dict[str, Any]] | None,
    settings: Settings,
) -> DatasetImport:
    """From an ``upload`` (filename, content, form fields), stored in the caller's upload area
    (``uploads/<owner id>/<job id>/``), or from a server-side ``data.path``: files of the
    caller's earlier uploads, inside that area."""
    require_writer(principal)
    data_dir = Path(settings.data_dir)
    job_id = new_id()
    if upload is not None:
        filename, content, fields = upload
        name = storage.safe_filename(filename)
        if Path(name).suffix.lower() not in storage.SUFFIXES:
            raise errors.BadRequest(
                "only .csv and .npz files can be imported", loc=["body", "file"]
            )
        directory = storage.upload_dir(principal.user_id, job_id)
        data = validated_fields(fields, path=f"{directory}/{name}")
        await check_name_free(session, principal.user_id, data.dataset_name or data.name)
        size = len(content)
        await check_limits(session, settings, principal.user_id, size)
        await asyncio.to_thread(storage.store_upload, data_dir / directory / name, content)
        names = [f"{directory}/{name}"]
        source, output_path = "upload", directory
    else:
        assert data is not None
        try:
            names = await asyncio.to_thread(storage.locate, data_dir, principal.user_id, data.path)
        except storage.PathRefused as exc:
            raise errors.BadRequest(str(exc), loc=["body", "path"]) from None
        await check_name_free(session, principal.user_id, data.dataset_name or data.name)
        size = 0  # no files of its own: it reads an earlier upload's
        await check_limits(session, settings, principal.user_id, size)
        source, output_path = "path", str(Path(data.path))
    dataset_name = data.dataset_name or data.name
    job = DatasetImport(
        id=job_id,
        owner_id=principal.user_id,
        name=data.name,
        config={
            **data.model_dump(),
            "dataset_name": dataset_name,
            "source": source,
            "files": names,
        },
        num_signals=0,
        num_files=len(names),
        output_path=output_path,
        bytes_stored=size,
        **new_job_fields(),
    )
    session.add(job)
    await session.flush()
    log.info("experiments.import.created", job_id=str(job.id), files=len(names), source=source)
    return job


async def get_job(
    session: AsyncSession,
    model: JobModel,
    *,
    principal: Principal,
    job_id: uuid.UUID,
    write: bool = False,
) -> Job:
    return await get_owned(
        session, model, job_id, principal=principal, what=WHAT[model], write=write
    )


async def list_jobs(
    session: AsyncSession,
    model: JobModel,
    *,
    principal: Principal,
    limit: int,
    cursor: str | None,
    status: str | None = None,
    owner_id: uuid.UUID | None = None,
) -> tuple[list[Job], str | None]:
    """Newest first."""
    rows, next_cursor = await list_owned(
        session,
        model,
        principal=principal,
        kind=model.__tablename__,
        limit=limit,
        cursor=cursor,
        status=status,
        owner_id=owner_id,
    )
    return list(rows), next_cursor


async def cancel_job(
    session: AsyncSession,
    model: JobModel,
    *,
    principal: Principal,
    job_id: uuid.UUID,
    data_dir: Path,
) -> Job:
    """A pending job is cancelled at once; a running one when its worker next looks (its files
    are removed, no dataset is created). Finished jobs: 409."""
    job = await get_job(session, model, principal=principal, job_id=job_id, write=True)
    if job.status == "pending":
        job.status = "cancelled"
        job.ended_at = utcnow()
        await storage.release_files(data_dir, job)
    elif job.status == "running":
        job.cancel_requested = True
    else:
        raise errors.JobFinished(job.status)
    await session.flush()
    return job
