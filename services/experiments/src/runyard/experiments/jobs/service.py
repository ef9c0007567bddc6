"""Dataset generation and import jobs: create, read, cancel. The work itself is done by the
``dataset-jobs`` worker (``runner``), which claims job rows with ``FOR UPDATE SKIP LOCKED``.

Job statuses: ``pending`` → ``running`` → ``completed | failed``; ``cancelled`` from
``pending`` at once, from ``running`` when the worker sees ``cancel_requested`` (between steps).
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from runyard.experiments import errors
from runyard.experiments.datasets.service import check_name_free
from runyard.experiments.jobs import files, signal_model
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


async def create_generation(
    session: AsyncSession, *, principal: Principal, data: GenerationCreate
) -> DatasetGeneration:
    require_writer(principal)
    specs = signal_model.plan(data.fault_classes, data.severities, data.signals_per_combination)
    if len(specs) > MAX_GENERATED_SIGNALS:
        raise errors.TooManySignals(len(specs), MAX_GENERATED_SIGNALS)
    dataset_name = data.dataset_name or data.name
    await check_name_free(session, principal.user_id, dataset_name)
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
    data_dir: Path,
) -> DatasetImport:
    """From a server-side ``data.path`` inside ``data_dir``, or from an ``upload`` (filename,
    content, form fields), which is stored under ``imports/<job id>/``."""
    require_writer(principal)
    job_id = new_id()
    if upload is not None:
        filename, content, fields = upload
        name = files.safe_filename(filename)
        if Path(name).suffix.lower() not in files.SUFFIXES:
            raise errors.BadRequest(
                "only .csv and .npz files can be imported", loc=["body", "file"]
            )
        data = validated_fields(fields, path=f"imports/{job_id}/{name}")
        await check_name_free(session, principal.user_id, data.dataset_name or data.name)
        await asyncio.to_thread(
            files.store_upload, data_dir / "imports" / str(job_id) / name, content
        )
        names = [f"imports/{job_id}/{name}"]
        source = "upload"
    else:
        assert data is not None
        try:
            names = await asyncio.to_thread(files.locate, data_dir, data.path)
        except files.PathRefused as exc:
            raise errors.BadRequest(str(exc), loc=["body", "path"]) from None
        source = "path"
        await check_name_free(session, principal.user_id, data.dataset_name or data.name)
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
        output_path=str(Path(data.path)) if source == "path" else f"imports/{job_id}",
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
    session: AsyncSession, model: JobModel, *, principal: Principal, job_id: uuid.UUID
) -> Job:
    """A pending job is cancelled at once; a running one when its worker next looks (its files
    are removed, no dataset is created). Finished jobs: 409."""
    job = await get_job(session, model, principal=principal, job_id=job_id, write=True)
    if job.status == "pending":
        job.status = "cancelled"
        job.ended_at = utcnow()
    elif job.status == "running":
        job.cancel_requested = True
    else:
        raise errors.JobFinished(job.status)
    await session.flush()
    return job
