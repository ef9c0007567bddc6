"""Dataset generation and import jobs: create, read, cancel. The work itself is done by the
``dataset-jobs`` worker (``job_runner``), which claims job rows with ``FOR UPDATE SKIP LOCKED``.

Job statuses: ``pending`` → ``running`` → ``completed | failed``; ``cancelled`` from
``pending`` at once, from ``running`` when the worker sees ``cancel_requested`` (between steps).
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from runyard.experiments import importing, listing, signal_model
from runyard.experiments.job_schemas import MAX_GENERATED_SIGNALS, GenerationCreate, ImportFromPath
from runyard.experiments.models import Dataset, DatasetGeneration, DatasetImport
from runyard.shared.db import new_id, utcnow
from runyard.shared.http import ProblemError
from runyard.shared.identity import Principal, require_writer
from runyard.shared.logging import get_logger

log = get_logger(__name__)

Job = DatasetGeneration | DatasetImport
JobModel = type[DatasetGeneration] | type[DatasetImport]
WHAT = {DatasetGeneration: "dataset generation", DatasetImport: "dataset import"}


def bad_request(detail: str, loc: list[str]) -> ProblemError:
    return ProblemError(
        400,
        "Bad Request",
        detail,
        errors=[{"loc": loc, "msg": detail, "type": "value_error"}],
    )


async def check_dataset_name_free(session: AsyncSession, owner_id: uuid.UUID, name: str) -> None:
    taken = await session.scalar(
        select(Dataset.id).where(Dataset.owner_id == owner_id, Dataset.name == name)
    )
    if taken is not None:
        raise ProblemError(
            409, "Conflict", f"You already have a dataset named {name!r}.", field="dataset_name"
        )


async def create_generation(
    session: AsyncSession, *, principal: Principal, data: GenerationCreate
) -> DatasetGeneration:
    require_writer(principal)
    specs = signal_model.plan(data.fault_classes, data.severities, data.signals_per_combination)
    if len(specs) > MAX_GENERATED_SIGNALS:
        raise ProblemError(
            422,
            "Validation failed",
            f"{len(specs)} signals requested; at most {MAX_GENERATED_SIGNALS} per job.",
            errors=[
                {
                    "loc": ["body", "signals_per_combination"],
                    "msg": f"too many signals ({len(specs)})",
                    "type": "value_error",
                }
            ],
        )
    dataset_name = data.dataset_name or data.name
    await check_dataset_name_free(session, principal.user_id, dataset_name)
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
        status="pending",
        num_signals=len(specs),
        num_faults=len([f for f in data.fault_classes if f != "normal"]),
        output_path=f"generations/{job_id}",
        progress=0,
        items_done=0,
        attempts=0,
        cancel_requested=False,
        errors=[],
    )
    session.add(job)
    await session.flush()
    log.info("experiments.generation.created", job_id=str(job.id), signals=len(specs))
    return job


def safe_filename(filename: str | None) -> str:
    base = Path(filename or "upload").name
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", base).lstrip(".")[:200]
    return cleaned or "upload"


def store_upload(target: Path, content: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(content)


def locate(data_dir: Path, given: str) -> list[str]:
    """The files a server-side path names, relative to the data directory."""
    found = importing.files_at(importing.resolve_inside(data_dir, given))
    base = data_dir.resolve()
    if any(not p.resolve().is_relative_to(base) for p in found):  # a symlink leading out
        raise importing.PathRefused("the path must lie inside the service's data directory")
    return [str(p.relative_to(base)) for p in found]


def validated_fields(fields: dict[str, Any], *, path: str) -> ImportFromPath:
    """The form fields of an upload as an import request (422 naming the bad field)."""
    try:
        return ImportFromPath.model_validate({**fields, "path": path})
    except ValidationError as exc:
        raise ProblemError(
            422,
            "Validation failed",
            "The form fields did not match the expected shape.",
            errors=[
                {"loc": ["body", *e["loc"]], "msg": e["msg"], "type": e["type"]}
                for e in exc.errors()
            ],
        ) from None


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
        name = safe_filename(filename)
        if Path(name).suffix.lower() not in importing.SUFFIXES:
            raise bad_request("only .csv and .npz files can be imported", ["body", "file"])
        data = validated_fields(fields, path=f"imports/{job_id}/{name}")
        await check_dataset_name_free(session, principal.user_id, data.dataset_name or data.name)
        await asyncio.to_thread(store_upload, data_dir / "imports" / str(job_id) / name, content)
        files = [f"imports/{job_id}/{name}"]
        source = "upload"
    else:
        assert data is not None
        try:
            files = await asyncio.to_thread(locate, data_dir, data.path)
        except importing.PathRefused as exc:
            raise bad_request(str(exc), ["body", "path"]) from None
        source = "path"
        await check_dataset_name_free(session, principal.user_id, data.dataset_name or data.name)
    dataset_name = data.dataset_name or data.name
    job = DatasetImport(
        id=job_id,
        owner_id=principal.user_id,
        name=data.name,
        config={
            **data.model_dump(),
            "dataset_name": dataset_name,
            "source": source,
            "files": files,
        },
        status="pending",
        num_signals=0,
        num_files=len(files),
        output_path=str(Path(data.path)) if source == "path" else f"imports/{job_id}",
        progress=0,
        items_done=0,
        attempts=0,
        cancel_requested=False,
        errors=[],
    )
    session.add(job)
    await session.flush()
    log.info("experiments.import.created", job_id=str(job.id), files=len(files), source=source)
    return job


async def get_job(
    session: AsyncSession,
    model: JobModel,
    *,
    principal: Principal,
    job_id: uuid.UUID,
    write: bool = False,
) -> Any:
    return await listing.get_owned(
        session, model, principal=principal, row_id=job_id, what=WHAT[model], write=write
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
) -> tuple[Sequence[Any], str | None]:
    return await listing.list_owned(
        session,
        model,
        principal=principal,
        kind=model.__tablename__,
        limit=limit,
        cursor=cursor,
        status=status,
        owner_id=owner_id,
    )


async def cancel_job(
    session: AsyncSession, model: JobModel, *, principal: Principal, job_id: uuid.UUID
) -> Any:
    """A pending job is cancelled at once; a running one when its worker next looks (its files
    are removed, no dataset is created). Finished jobs: 409."""
    job = await get_job(session, model, principal=principal, job_id=job_id, write=True)
    if job.status == "pending":
        job.status = "cancelled"
        job.ended_at = utcnow()
    elif job.status == "running":
        job.cancel_requested = True
    else:
        raise ProblemError(409, "Conflict", f"The job is {job.status}.", current_status=job.status)
    await session.flush()
    return job
