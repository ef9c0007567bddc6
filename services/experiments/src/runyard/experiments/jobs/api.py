"""HTTP API of dataset jobs: ``/dataset-generations`` and ``/dataset-imports``, each with the
same list, read and cancel routes.

No ``from __future__ import annotations`` here: FastAPI reads the shared routes' annotations at
runtime, and they name each job kind's own response model (see ``add_job_routes``).
"""

import uuid
from functools import partial
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from runyard.experiments import errors
from runyard.experiments.api import add_owned_list_route
from runyard.experiments.deps import SettingsDep
from runyard.experiments.jobs import service
from runyard.experiments.jobs.repository import JobModel
from runyard.experiments.jobs.schemas import (
    GenerationCreate,
    GenerationOut,
    ImportFromPath,
    ImportOut,
)
from runyard.experiments.models import DatasetGeneration, DatasetImport
from runyard.shared.identity import CurrentPrincipal
from runyard.shared.runtime import SessionDep

generations = APIRouter(prefix="/api/v1/dataset-generations", tags=["dataset-jobs"])
imports = APIRouter(prefix="/api/v1/dataset-imports", tags=["dataset-jobs"])

JobStatus = Literal["pending", "running", "completed", "failed", "cancelled"]
CONFLICT: dict[int | str, dict[str, Any]] = {409: {"description": "the job is already finished"}}
#: multipart framing and form fields on top of the file itself
FORM_OVERHEAD = 64 * 1024
MAX_JSON_BODY = 64 * 1024


def add_job_routes(router: APIRouter, model: JobModel, out: Any, noun: str) -> None:
    """``GET`` the list (newest first, by status and owner), ``GET`` one and ``POST .../cancel``
    for the jobs of ``model``; the routes are named ``list_<noun>s``, ``get_<noun>`` and
    ``cancel_<noun>`` (their OpenAPI operations)."""

    async def get_job(job_id: uuid.UUID, session: SessionDep, principal: CurrentPrincipal) -> Any:
        job = await service.get_job(session, model, principal=principal, job_id=job_id)
        return out.model_validate(job)

    async def cancel_job(
        job_id: uuid.UUID, session: SessionDep, principal: CurrentPrincipal
    ) -> Any:
        job = await service.cancel_job(session, model, principal=principal, job_id=job_id)
        return out.model_validate(job)

    add_owned_list_route(
        router,
        name=f"list_{noun}s",
        rows=partial(service.list_jobs, model=model),
        out=out,
        statuses=JobStatus,
        plural="jobs",
    )
    router.add_api_route(
        "/{job_id}", get_job, methods=["GET"], response_model=out, name=f"get_{noun}"
    )
    router.add_api_route(
        "/{job_id}/cancel",
        cancel_job,
        methods=["POST"],
        response_model=out,
        responses=CONFLICT,
        name=f"cancel_{noun}",
    )


# --- generation


@generations.post("", status_code=202, response_model=GenerationOut)
async def create_generation(
    body: GenerationCreate, session: SessionDep, principal: CurrentPrincipal, response: Response
) -> GenerationOut:
    """Queue a job that synthesises pump vibration signals (shaft harmonics plus noise, with
    each fault class's signature at each severity), writes them as .npz files under the data
    directory and creates the dataset with every signal's RMS, kurtosis and dominant frequency.
    Poll the job for `status` and `progress`."""
    job = await service.create_generation(session, principal=principal, data=body)
    response.headers["Location"] = f"/api/v1/dataset-generations/{job.id}"
    return GenerationOut.model_validate(job)


add_job_routes(generations, DatasetGeneration, GenerationOut, "generation")


# --- import


async def read_limited(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise errors.UploadTooLarge(limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise errors.UploadTooLarge(limit)
    request._body = bytes(body)  # request.form() parses what was read here
    return request._body


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
            raise errors.MissingFile()
        content = await file.read()
        if len(content) > settings.upload_max_bytes:
            raise errors.UploadTooLarge(settings.upload_max_bytes)
        fields = {k: v for k, v in form.multi_items() if k != "file" and isinstance(v, str)}
        job = await service.create_import(
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
            raise errors.InvalidBody("The request did not match the expected shape.", exc) from None
        job = await service.create_import(
            session, principal=principal, data=data, upload=None, data_dir=data_dir
        )
    else:
        raise errors.UnsupportedMediaType()
    response.headers["Location"] = f"/api/v1/dataset-imports/{job.id}"
    return ImportOut.model_validate(job)


add_job_routes(imports, DatasetImport, ImportOut, "import")
