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
LIMITS = (
    "over a limit, named with what the request would take (`requested`) and the `limit`: "
    "your pending and running jobs (EXPERIMENTS_USER_MAX_ACTIVE_JOBS), the bytes of signal "
    "files your jobs hold (EXPERIMENTS_USER_QUOTA_BYTES)"
)
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
        job_id: uuid.UUID, session: SessionDep, principal: CurrentPrincipal, settings: SettingsDep
    ) -> Any:
        job = await service.cancel_job(
            session,
            model,
            principal=principal,
            job_id=job_id,
            data_dir=Path(settings.data_dir),
        )
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


@generations.post(
    "",
    status_code=202,
    response_model=GenerationOut,
    responses={
        422: {
            "description": f"an invalid body, or {LIMITS}, the samples of one generation "
            "(EXPERIMENTS_GENERATION_MAX_SAMPLES)"
        }
    },
)
async def create_generation(
    body: GenerationCreate,
    session: SessionDep,
    principal: CurrentPrincipal,
    settings: SettingsDep,
    response: Response,
) -> GenerationOut:
    """Queue a job that synthesises pump vibration signals (shaft harmonics plus noise, with
    each fault class's signature at each severity), writes them as .npz files under the data
    directory and creates the dataset with every signal's RMS, kurtosis and dominant frequency.
    Poll the job for `status` and `progress`. The samples it writes (signals times samples per
    signal) are limited, and count against your storage quota."""
    job = await service.create_generation(
        session, principal=principal, data=body, settings=settings
    )
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
        400: {"description": "a path outside your upload area, missing, or no .csv/.npz"},
        413: {"description": "upload larger than EXPERIMENTS_UPLOAD_MAX_BYTES"},
        415: {"description": "neither multipart/form-data nor application/json"},
        422: {"description": f"invalid fields, or {LIMITS}"},
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
    form fields; stored in your upload area, `uploads/<your user id>/<job id>/`), or (JSON) a
    server-side `path`, relative to the data directory, of your earlier uploads: a file or a
    directory inside your upload area, such as an upload import's `output_path`. The job
    validates every row and array first: any problem fails it with the problems listed and
    imports nothing. What one import reads is limited (EXPERIMENTS_IMPORT_MAX_EXPANDED_BYTES,
    counted before reading, and EXPERIMENTS_IMPORT_MAX_SIGNALS): beyond, the job fails."""
    content_type = request.headers.get("content-type", "")
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
            settings=settings,
        )
    elif content_type.startswith("application/json"):
        raw = await read_limited(request, MAX_JSON_BODY)
        try:
            data = ImportFromPath.model_validate_json(raw)
        except ValidationError as exc:
            raise errors.InvalidBody("The request did not match the expected shape.", exc) from None
        job = await service.create_import(
            session, principal=principal, data=data, upload=None, settings=settings
        )
    else:
        raise errors.UnsupportedMediaType()
    response.headers["Location"] = f"/api/v1/dataset-imports/{job.id}"
    return ImportOut.model_validate(job)


add_job_routes(imports, DatasetImport, ImportOut, "import")
