"""The MLflow UI's own artifact endpoints, on the store of the artifact proxy (``artifacts_api``):

- ``GET /get-artifact?run_uuid=&path=`` (also ``/ajax-api/2.0/mlflow/get-artifact``, which the
  UI's evaluation views ask for) streams a run's file;
- ``GET /model-versions/get-artifact?name=&version=&path=`` streams a file of a registered
  model version, ``path`` relative to the version's download URI (its run's artifact, or its
  logged model's files); at the root only, as MLflow serves it;
- ``POST /ajax-api/2.0/mlflow/upload-artifact?run_uuid=&path=`` stores the raw body at the
  run's path, streamed, capped at MLflow's 10 MB (MLflow reads it whole; Runyard never does).

Downloads are attachments typed by the file's name, as MLflow's server types them, with one
``Range`` honoured; the path is checked as MLflow checks it before anything is looked up.
"""

from __future__ import annotations

import mimetypes
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse
from sqlalchemy.ext.asyncio import AsyncSession

from runyard.experiments import errors
from runyard.experiments.artifacts import repository, service
from runyard.experiments.artifacts.api import (
    RuntimeDep,
    StoreDep,
    artifact_response,
    content_length,
)
from runyard.experiments.artifacts.repository import Holder, of_experiment
from runyard.experiments.artifacts.store import ArtifactStore
from runyard.experiments.mlflow import logged_models, registry
from runyard.experiments.mlflow.artifacts_api import TRACKING_PREFIXES, check_safe, clean
from runyard.experiments.mlflow.errors import MlflowRoute, error_responses, invalid, not_found
from runyard.experiments.models import Artifact
from runyard.shared.identity import CurrentPrincipal, Principal

router = APIRouter(route_class=MlflowRoute, tags=["mlflow"], responses=error_responses())

#: MLflow's cap on an ``upload-artifact`` body, and its words when one passes it
UI_UPLOAD_MAX_BYTES = 10 * 1024 * 1024
UI_UPLOAD_TOO_LARGE = "Artifact size is too large. Max size is 10MB."
#: what MLflow serves as ``text/plain`` (by extension, or the whole name when it has none)
TEXT_FILES = frozenset(
    {
        *("txt", "log", "err", "cfg", "conf", "cnf", "cf", "ini", "properties", "prop"),
        *("hocon", "toml", "yaml", "yml", "xml", "json", "js", "py", "py3", "csv", "tsv"),
        *("md", "rst", "ipynb", "MLmodel", "MLproject"),
    }
)
Text = Annotated[str | None, Query(max_length=5000)]
PathParam = Annotated[str | None, Query(max_length=2048)]


def served_type(path: str) -> str:
    """The ``Content-Type`` MLflow's server gives a downloaded file (from its name alone, never
    from what the uploader declared)."""
    name = path.rsplit("/", 1)[-1]
    extension = name.rsplit(".", 1)[-1] if "." in name else name
    if extension in TEXT_FILES:
        return "text/plain"
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


async def file_of(
    session: AsyncSession, principal: Principal, holder: Holder, name: str, asked: str
) -> Artifact:
    """The holder's artifact ``name``, a file: the root or a folder is
    ``INVALID_PARAMETER_VALUE``, nothing there ``RESOURCE_DOES_NOT_EXIST`` (``asked``: the path
    as the caller named it)."""
    folder = invalid(f"Artifact path refers to a directory, not a file: '{asked}'")
    if not name:
        raise folder
    under, _ = await repository.list_artifacts(
        session, holder, prefix=name + "/", limit=1, cursor=None
    )
    if under:
        raise folder
    try:
        return await service.get_artifact(session, principal=principal, holder=holder, path=name)
    except errors.NotFound:
        raise not_found(f"No such artifact: '{asked}'") from None


def download(artifact: Artifact, store: ArtifactStore, request: Request) -> StreamingResponse:
    """The file streamed as an attachment, typed by its name, never sniffed."""
    response = artifact_response(artifact, store, request)
    response.headers["Content-Type"] = served_type(artifact.path)
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@router.get("/get-artifact")
@router.head("/get-artifact", include_in_schema=False)
@router.get(TRACKING_PREFIXES[1] + "/get-artifact", include_in_schema=False)
async def get_run_artifact(
    request: Request,
    principal: CurrentPrincipal,
    runtime: RuntimeDep,
    store: StoreDep,
    run_id: Annotated[str | None, Query(max_length=64)] = None,
    run_uuid: Annotated[str | None, Query(max_length=64)] = None,
    path: PathParam = None,
) -> StreamingResponse:
    """A file of the run, streamed as an attachment (one ``Range`` gives 206), typed by its
    name as MLflow's server types it."""
    if path is None:
        raise invalid("Missing value for required parameter 'path'.")
    path = check_safe(path)
    async with runtime.sessionmaker() as session, session.begin():
        run = await logged_models.run_of(session, principal, run_id or run_uuid or "")
        artifact = await file_of(session, principal, of_experiment(run.id), clean(path), path)
    return download(artifact, store, request)


@router.get("/model-versions/get-artifact")
@router.head("/model-versions/get-artifact", include_in_schema=False)
async def get_model_version_artifact(
    request: Request,
    principal: CurrentPrincipal,
    runtime: RuntimeDep,
    store: StoreDep,
    name: Text = None,
    version: Text = None,
    path: PathParam = None,
) -> StreamingResponse:
    """A file of the caller's model version, ``path`` relative to the version's files (what
    ``model-versions/get-download-uri`` answers), streamed as ``get-artifact`` streams a run's.
    Another user's model does not exist for the caller."""
    if path is None:
        raise invalid("Missing value for required parameter 'path'.")
    path = check_safe(path)
    async with runtime.sessionmaker() as session, session.begin():
        model, found = await registry.get_version(session, principal, name, version)
        if found.logged_model_id is not None:
            holder = Holder(logged_model_id=found.logged_model_id)
        elif found.experiment_id is not None:
            holder = of_experiment(found.experiment_id)
        else:
            raise not_found(
                f"Model Version (name={model.name}, version={found.version}) has no files: "
                "the run they belonged to was deleted"
            )
        wanted = "/".join(p for p in (found.artifact_path, clean(path)) if p)
        artifact = await file_of(session, principal, holder, wanted, path)
    return download(artifact, store, request)


async def first_bytes(request: Request) -> tuple[bytes, AsyncIterator[bytes]]:
    """The body's first non-empty chunk (``b""``: no body), and the rest of it, unread."""
    chunks = request.stream().__aiter__()
    async for chunk in chunks:
        if chunk:
            return chunk, chunks
    return b"", chunks


async def capped(first: bytes, rest: AsyncIterator[bytes], limit: int) -> AsyncIterator[bytes]:
    """``first`` then ``rest``, refused with MLflow's words once past ``limit`` bytes."""
    total = 0
    pending: bytes | None = first
    while pending is not None:
        total += len(pending)
        if total > limit:
            raise invalid(UI_UPLOAD_TOO_LARGE)
        yield pending
        pending = await anext(rest, None)


@router.post(TRACKING_PREFIXES[1] + "/upload-artifact", include_in_schema=False)
async def upload_run_artifact(
    request: Request,
    principal: CurrentPrincipal,
    runtime: RuntimeDep,
    store: StoreDep,
    run_uuid: Annotated[str | None, Query(max_length=64)] = None,
    path: PathParam = None,
) -> Response:
    """The MLflow UI's upload: the raw body becomes the run's file at ``path`` (replacing one
    there), through the same streamed store, size limit, quota and ``artifact.created`` as the
    artifact proxy's PUT. Answered, as by MLflow, with an empty JSON response."""
    if not run_uuid:
        raise invalid("Request must specify run_uuid.")
    if not path:
        raise invalid("Request must specify path.")
    path = check_safe(path)
    declared = content_length(request)
    if declared is not None and declared > UI_UPLOAD_MAX_BYTES:
        raise invalid(UI_UPLOAD_TOO_LARGE)
    first, rest = await first_bytes(request)
    if not first:
        raise invalid("Request must specify data.")
    async with runtime.sessionmaker() as session, session.begin():
        run = await logged_models.run_of(session, principal, run_uuid)
    await service.upload(
        runtime.sessionmaker,
        store,
        runtime.settings,
        principal=principal,
        holder=of_experiment(run.id),
        path=clean(path),
        body=capped(first, rest, UI_UPLOAD_MAX_BYTES),
        content_length=declared,
        content_type=request.headers.get("content-type"),
    )
    return Response(media_type="application/json")
