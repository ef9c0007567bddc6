from __future__ import annotations

import uuid
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from runyard.experiments import jobs
from runyard.experiments.api.deps import SettingsDep
from runyard.experiments.job_schemas import (
    GenerationCreate,
    GenerationOut,
    ImportFromPath,
    ImportOut,
)
from runyard.experiments.models import DatasetGeneration, DatasetImport
from runyard.experiments.pagination import DEFAULT_LIMIT, Cursor, Limit
from runyard.experiments.schemas import Page
from runyard.shared.http import ProblemError
from runyard.shared.identity import CurrentPrincipal
from runyard.shared.runtime import SessionDep

generations = APIRouter(prefix="/api/v1/dataset-generations", tags=["dataset-jobs"])
imports = APIRouter(prefix="/api/v1/dataset-imports", tags=["dataset-jobs"])

JobStatus = Literal["pending", "running", "completed", "failed", "cancelled"]
OwnerFilter = Annotated[
    uuid.UUID | None, Query(description="admins and viewers: only this owner's jobs")
]
CONFLICT: dict[int | str, dict[str, Any]] = {409: {"description": "the job is already finished"}}
#: multipart framing and form fields on top of the file itself
FORM_OVERHEAD = 64 * 1024
MAX_JSON_BODY = 64 * 1024


# --- generation


@generations.post("", status_code=202, response_model=GenerationOut)
async def create_generation(
    body: GenerationCreate, session: SessionDep, principal: CurrentPrincipal, response: Response
) -> GenerationOut:
    """Queue a job that synthesises pump vibration signals (shaft harmonics plus noise, with
    each fault class's signature at each severity), writes them as .npz files under the data
    directory and creates the dataset with every signal's RMS, kurtosis and dominant frequency.
    Poll the job for `status` and `progress`."""
    job = await jobs.create_generation(session, principal=principal, data=body)
    response.headers["Location"] = f"/api/v1/dataset-generations/{job.id}"
    return GenerationOut.model_validate(job)


@generations.get("", response_model=Page[GenerationOut])
async def list_generations(
    session: SessionDep,
    principal: CurrentPrincipal,
    status: JobStatus | None = None,
    owner_id: OwnerFilter = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[GenerationOut]:
    rows, next_cursor = await jobs.list_jobs(
        session,
        DatasetGeneration,
        principal=principal,
        limit=limit,
        cursor=cursor,
        status=status,
        owner_id=owner_id,
    )
    return Page[GenerationOut](
        items=[GenerationOut.model_validate(r) for r in rows], next_cursor=next_cursor
    )


@generations.get("/{job_id}", response_model=GenerationOut)
async def get_generation(
    job_id: uuid.UUID, session: SessionDep, principal: CurrentPrincipal
) -> GenerationOut:
    job = await jobs.get_job(session, DatasetGeneration, principal=principal, job_id=job_id)
    return GenerationOut.model_validate(job)


@generations.post("/{job_id}/cancel", response_model=GenerationOut, responses=CONFLICT)
async def cancel_generation(
    job_id: uuid.UUID, session: SessionDep, principal: CurrentPrincipal
) -> GenerationOut:
    job = await jobs.cancel_job(session, DatasetGeneration, principal=principal, job_id=job_id)
    return GenerationOut.model_validate(job)


# --- import


async def read_limited(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large(limit)
    request._body = bytes(body)  # request.form() parses what was read here
    return request._body


def too_large(limit: int) -> ProblemError:
    return ProblemError(
        413,
        "Content Too Large",
        f"The upload is larger than {limit} bytes (EXPERIMENTS_UPLOAD_MAX_BYTES).",
        max_bytes=limit,
    )


IMPORT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file", "name"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "name": {"type": "string"},
                        "dataset_name": {"type": "string"},
                        "description": {"type": "string"},
                        "sample_rate_hz": {"type": "number"},
                    },
                }
            },
            "application/json": {"schema": ImportFromPath.model_json_schema()},
        },
    }
}


@imports.post(
    "",
    status_code=202,
    response_model=ImportOut,
    openapi_extra=IMPORT_BODY,
    responses={
        400: {"description": "a path outside the data directory, missing, or no .csv/.npz"},
        413: {"description": "upload larger than EXPERIMENTS_UPLOAD_MAX_BYTES"},
        415: {"description": "neither multipart/form-data nor application/json"},
    },
)
async def create_import(
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
    settings: SettingsDep,
    response: Response,
) -> ImportOut:
    """Import signals with labels from a CSV or NPZ file: uploaded (multipart `file` plus the
    form fields), or a server-side `path` (a file or a directory of them) inside the service's
    data directory (JSON). The job validates every row and array first: any problem fails it
    with the problems listed and imports nothing."""
    content_type = request.headers.get("content-type", "")
    data_dir = Path(settings.data_dir)
    if content_type.startswith("multipart/form-data"):
        await read_limited(request, settings.upload_max_bytes + FORM_OVERHEAD)
        form = await request.form(max_files=1, max_fields=20)
        file = form.get("file")
        if not isinstance(file, UploadFile):
            raise ProblemError(
                422,
                "Validation failed",
                "A multipart import needs a `file` part.",
                errors=[{"loc": ["body", "file"], "msg": "field required", "type": "missing"}],
            )
        content = await file.read()
        if len(content) > settings.upload_max_bytes:
            raise too_large(settings.upload_max_bytes)
        fields = {k: v for k, v in form.multi_items() if k != "file" and isinstance(v, str)}
        job = await jobs.create_import(
            session,
            principal=principal,
            data=None,
            upload=(file.filename or "upload", content, fields),
            data_dir=data_dir,
        )
    elif content_type.startswith("application/json"):
        raw = await read_limited(request, MAX_JSON_BODY)
        try:
            data = ImportFromPath.model_validate_json(raw)
        except ValidationError as exc:
            raise ProblemError(
                422,
                "Validation failed",
                "The request did not match the expected shape.",
                errors=[
                    {"loc": ["body", *e["loc"]], "msg": e["msg"], "type": e["type"]}
                    for e in exc.errors()
                ],
            ) from None
        job = await jobs.create_import(
            session, principal=principal, data=data, upload=None, data_dir=data_dir
        )
    else:
        raise ProblemError(
            415,
            "Unsupported Media Type",
            "Send multipart/form-data (an upload) or application/json (a server-side path).",
        )
    response.headers["Location"] = f"/api/v1/dataset-imports/{job.id}"
    return ImportOut.model_validate(job)


@imports.get("", response_model=Page[ImportOut])
async def list_imports(
    session: SessionDep,
    principal: CurrentPrincipal,
    status: JobStatus | None = None,
    owner_id: OwnerFilter = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[ImportOut]:
    rows, next_cursor = await jobs.list_jobs(
        session,
        DatasetImport,
        principal=principal,
        limit=limit,
        cursor=cursor,
        status=status,
        owner_id=owner_id,
    )
    return Page[ImportOut](
        items=[ImportOut.model_validate(r) for r in rows], next_cursor=next_cursor
    )


@imports.get("/{job_id}", response_model=ImportOut)
async def get_import(
    job_id: uuid.UUID, session: SessionDep, principal: CurrentPrincipal
) -> ImportOut:
    job = await jobs.get_job(session, DatasetImport, principal=principal, job_id=job_id)
    return ImportOut.model_validate(job)


@imports.post("/{job_id}/cancel", response_model=ImportOut, responses=CONFLICT)
async def cancel_import(
    job_id: uuid.UUID, session: SessionDep, principal: CurrentPrincipal
) -> ImportOut:
    job = await jobs.cancel_job(session, DatasetImport, principal=principal, job_id=job_id)
    return ImportOut.model_validate(job)
