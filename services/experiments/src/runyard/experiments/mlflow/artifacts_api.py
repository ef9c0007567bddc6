"""MLflow's artifact proxy (``/api/2.0/mlflow-artifacts/artifacts``) and run artifact listing
(``/api/2.0/mlflow/artifacts/list``) on Runyard's artifacts, under both ``/api/2.0`` and
``/ajax-api/2.0``.

A run's ``artifact_uri`` is ``mlflow-artifacts:/<experiment_id>/<run_id>/artifacts``; the stock
client turns it into ``/api/2.0/mlflow-artifacts/artifacts/<experiment_id>/<run_id>/artifacts/
<path>``, which is the Runyard experiment ``<run_id>``'s artifact ``<path>`` (the experiment must
belong to MLflow experiment ``<experiment_id>``: its project, or ``0`` for none). A logged
model's ``mlflow-artifacts:/<experiment_id>/models/<model_id>/artifacts/<path>`` is its source
run's artifact ``models/<model_id>/<path>``, or, for a model made outside a run, the model's own
artifact ``<path>``. Uploads, downloads (with ``Range``) and deletes go
through ``artifacts.service``: the same streaming, content-addressed store, size limit, quota and
``artifact.created`` / ``artifact.deleted`` events as Runyard's own artifact API. MLflow's
multipart-upload and presigned-URL endpoints (``mpu/*``, ``presigned``) are not served: the
client uses them only when the server says it supports them or when told to by an environment
variable, and then falls back to a single streamed upload or download. The MLflow UI's own
downloads and upload, on the same store, are ``ui_artifacts_api``'s.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PureWindowsPath
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import func, literal, select
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
from runyard.experiments.mlflow import ids, logged_models
from runyard.experiments.mlflow.errors import (
    MlflowError,
    MlflowRoute,
    error_responses,
    invalid,
    not_found,
)
from runyard.experiments.models import Artifact, LoggedModel
from runyard.shared.identity import CurrentPrincipal, Principal
from runyard.shared.runtime import SessionDep

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])
router = APIRouter(route_class=MlflowRoute, tags=["mlflow"], responses=error_responses())
PROXY_PREFIXES = ("/api/2.0/mlflow-artifacts", "/ajax-api/2.0/mlflow-artifacts")
TRACKING_PREFIXES = ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow")
#: a delete of a directory removes its files a page at a time
DELETE_PAGE = 500


@dataclass(frozen=True)
class Location:
    """Where an ``mlflow-artifacts`` path points: the artifacts' holder (a Runyard experiment,
    or a logged model made outside a run) and a path prefix among them (``""``, or
    ``models/<model_id>/`` in a run), and the rest of the path (``""``: the root)."""

    holder: Holder
    prefix: str
    rest: str

    @property
    def path(self) -> str:
        return self.prefix + self.rest


def clean(path: str) -> str:
    """A relative path without its leading and trailing slashes, checked unless empty: a path
    Runyard's store refuses (``..``, empty names and the like) is MLflow's ``Invalid path``
    (``INVALID_PARAMETER_VALUE``, 400), as MLflow's server answers it."""
    path = path.strip("/")
    if path:
        try:
            service.check_path(path)
        except errors.InvalidArtifactPath:
            raise invalid("Invalid path") from None
    return path


def check_safe(path: str) -> str:
    """MLflow's ``validate_path_is_safe``, checked before the run is looked up (as MLflow
    does): no ``#``, no backslash, no ``..`` name, not absolute (``/x``, ``C:/x``, a
    ``file:`` URI's absolute path) — once percent-decoded (until decoding changes nothing, as
    MLflow decodes). The decoded path (a ``file:`` URI's path), which MLflow then uses."""
    decoded = path
    for _ in range(10):
        again = urllib.parse.unquote(decoded)
        if again == decoded:
            break
        decoded = again
    else:
        raise invalid("Invalid path")
    if "#" in decoded:
        raise invalid("Invalid path")
    try:
        uri = urllib.parse.urlsplit(decoded)
    except ValueError:
        raise invalid("Invalid path") from None
    if uri.scheme == "file":
        decoded = uri.path
    if (
        "\\" in decoded
        or ".." in decoded.split("/")
        or decoded.startswith("/")
        or PureWindowsPath(decoded).is_absolute()
    ):
        raise invalid("Invalid path")
    return decoded


async def locate(session: AsyncSession, principal: Principal, path: str) -> Location:
    """The Runyard place of an ``mlflow-artifacts`` path the caller may read (access to write
    is checked by the upload or delete itself)."""
    # "." names name the directory they are in (MLflow's client lists a run's root as ".")
    parts = [part for part in path.strip("/").split("/") if part != "."]
    if len(parts) >= 3 and parts[1] != "models" and parts[2] == "artifacts":
        experiment_id, run_id, rest = parts[0], parts[1], "/".join(parts[3:])
        run = await logged_models.run_of(session, principal, run_id)
        if not logged_models.in_experiment(run, experiment_id):
            raise not_found(f"Run with id={run_id} not found in experiment {experiment_id}")
        return Location(of_experiment(run.id), "", clean(rest))
    if len(parts) >= 4 and parts[1] == "models" and parts[3] == "artifacts":
        experiment_id, model_id, rest = parts[0], parts[2], "/".join(parts[4:])
        model = await logged_models.get(session, principal, model_id, allow_deleted=True)
        if ids.experiment_id_of(model.project_id) != experiment_id:
            raise not_found(f"Logged model {model_id} not found in experiment {experiment_id}")
        return logged_models_location(model, clean(rest))
    raise invalid(
        f"Invalid artifact path '{path}': Runyard serves the artifacts of runs "
        "(<experiment_id>/<run_id>/artifacts/...) and of logged models "
        "(<experiment_id>/models/<model_id>/artifacts/...)."
    )


def logged_models_location(model: LoggedModel, rest: str) -> Location:
    """A logged model's file ``rest``: among its source run's artifacts, else its own."""
    if model.source_run_id is None:
        return Location(Holder(logged_model_id=model.id), "", rest)
    return Location(of_experiment(model.source_run_id), logged_models.models_prefix(model.id), rest)


async def list_children(
    session: AsyncSession, holder: Holder, prefix: str, directory: str
) -> list[dict[str, Any]]:
    """The files and directories directly in ``directory`` (relative to ``prefix``) of the
    holder's artifacts, as MLflow's ``FileInfo``: ``path`` is ``directory/name``, a
    directory has no size. Empty for a file or a directory that does not exist."""
    directory = clean(directory)
    base = prefix + (directory + "/" if directory else "")
    rest = func.substr(Artifact.path, literal(len(base) + 1))
    inner = (
        select(
            func.split_part(rest, "/", 1).label("name"),
            (func.strpos(rest, "/") > 0).label("is_dir"),
            Artifact.size.label("size"),
        )
        .where(holder.owns(), func.starts_with(Artifact.path, base))
        .subquery()
    )
    query = (
        select(inner.c.name, inner.c.is_dir, func.sum(inner.c.size))
        .group_by(inner.c.name, inner.c.is_dir)
        .order_by(inner.c.name.collate("C"), inner.c.is_dir)
    )
    files: list[dict[str, Any]] = []
    for name, is_dir, size in (await session.execute(query)).all():
        entry: dict[str, Any] = {
            "path": f"{directory}/{name}" if directory else name,
            "is_dir": bool(is_dir),
        }
        if not is_dir:
            entry["file_size"] = int(size)
        files.append(entry)
    return files


def proxy(path: str, methods: list[str]) -> Callable[[Endpoint], Endpoint]:
    """Registered under both prefixes; in the schema once (the first prefix, not ``HEAD``)."""

    def register(endpoint: Endpoint) -> Endpoint:
        for i, prefix in enumerate(PROXY_PREFIXES):
            for method in methods:
                router.add_api_route(
                    prefix + path,
                    endpoint,
                    methods=[method],
                    include_in_schema=i == 0 and method != "HEAD",
                )
        return endpoint

    return register


@proxy("/artifacts", ["GET"])
async def list_proxied_artifacts(
    session: SessionDep,
    principal: CurrentPrincipal,
    path: Annotated[str | None, Query(max_length=2048)] = None,
) -> dict[str, Any]:
    """The direct children of ``path`` (``<experiment_id>/<run_id>/artifacts[/dir]``), named
    by their base name, as MLflow's artifact server lists them."""
    if not path:
        raise invalid(
            "Listing the root of the artifact store is not supported: list a run's "
            "(<experiment_id>/<run_id>/artifacts) or a logged model's artifacts."
        )
    where = await locate(session, principal, path)
    files = await list_children(session, where.holder, where.prefix, where.rest)
    return {"files": [{**f, "path": f["path"].rsplit("/", 1)[-1]} for f in files]}


@proxy("/artifacts/{artifact_path:path}", ["GET", "HEAD"])
async def download_proxied_artifact(
    artifact_path: str,
    request: Request,
    principal: CurrentPrincipal,
    runtime: RuntimeDep,
    store: StoreDep,
) -> StreamingResponse:
    """The file, streamed (one ``Range`` gives 206; ``HEAD``: the headers alone)."""
    async with runtime.sessionmaker() as session, session.begin():
        where = await locate(session, principal, artifact_path)
        if not where.rest:
            raise invalid("A download names a file.")
        try:
            artifact = await service.get_artifact(
                session, principal=principal, holder=where.holder, path=where.path
            )
        except errors.NotFound:
            raise not_found(f"No such artifact: '{where.rest}'") from None
    return artifact_response(artifact, store, request)


@proxy("/artifacts/{artifact_path:path}", ["PUT"])
async def upload_proxied_artifact(
    artifact_path: str,
    request: Request,
    principal: CurrentPrincipal,
    runtime: RuntimeDep,
    store: StoreDep,
) -> dict[str, Any]:
    """The body is the file, streamed to the store; a file already at the path is replaced."""
    async with runtime.sessionmaker() as session, session.begin():
        where = await locate(session, principal, artifact_path)
    if not where.rest:
        raise invalid("An upload names a file.")
    await service.upload(
        runtime.sessionmaker,
        store,
        runtime.settings,
        principal=principal,
        holder=where.holder,
        path=where.path,
        body=request.stream(),
        content_length=content_length(request),
        content_type=request.headers.get("content-type"),
    )
    return {}


@proxy("/artifacts/{artifact_path:path}", ["DELETE"])
async def delete_proxied_artifacts(
    artifact_path: str,
    principal: CurrentPrincipal,
    runtime: RuntimeDep,
    store: StoreDep,
) -> dict[str, Any]:
    """The file at the path, or every file under it (a directory; the whole run's or model's
    artifacts at the root). Nothing there is no error, as for MLflow's server."""
    async with runtime.sessionmaker() as session, session.begin():
        where = await locate(session, principal, artifact_path)
        await service.holder_owner(session, principal, where.holder, write=True)
    doomed: list[str] = []
    async with runtime.sessionmaker() as session, session.begin():
        if where.rest and await repository.at_path(session, where.holder, where.path):
            doomed.append(where.path)
        under = where.path + "/" if where.rest else where.prefix
        cursor: str | None = None
        while True:
            rows, cursor = await repository.list_artifacts(
                session, where.holder, prefix=under, limit=DELETE_PAGE, cursor=cursor
            )
            doomed.extend(r.path for r in rows)
            if cursor is None:
                break
    for path in doomed:
        try:
            await service.delete_artifact(
                runtime.sessionmaker,
                store,
                principal=principal,
                holder=where.holder,
                path=path,
            )
        except errors.NotFound:
            continue  # deleted meanwhile
    return {}


#: what the stock client reads as "no multipart upload here: send the file in one PUT"
MULTIPART_UNSUPPORTED = "Multipart upload is not supported for the current artifact repository"


@proxy("/mpu/{action}/{artifact_path:path}", ["POST"])
async def multipart_upload(action: str, artifact_path: str) -> dict[str, Any]:
    """Not served: a client told to use multipart uploads (``MLFLOW_ENABLE_PROXY_MULTIPART_
    UPLOAD``) falls back to one streamed PUT on this answer."""
    refusal = MlflowError(
        f"{MULTIPART_UNSUPPORTED} (Runyard streams uploads whole).", "NOT_IMPLEMENTED"
    )
    refusal.status = 501
    raise refusal


@router.get(TRACKING_PREFIXES[0] + "/artifacts/list")
@router.get(TRACKING_PREFIXES[1] + "/artifacts/list", include_in_schema=False)
async def list_run_artifacts(
    session: SessionDep,
    principal: CurrentPrincipal,
    run_id: Annotated[str | None, Query(max_length=64)] = None,
    run_uuid: Annotated[str | None, Query(max_length=64)] = None,
    path: Annotated[str | None, Query(max_length=1024)] = None,
    page_token: Annotated[str | None, Query(max_length=1024)] = None,
) -> dict[str, Any]:
    """MLflow's ListArtifacts: the direct children of ``path`` of the run's artifacts, paths
    relative to the run's artifact root; one page holds them all (``page_token`` is ignored,
    as by MLflow's server for proxied artifact roots)."""
    wanted = run_id or run_uuid
    if not wanted:
        raise invalid("Missing value for required parameter 'run_id'.")
    if path:
        check_safe(path)
    run = await logged_models.run_of(session, principal, wanted)
    experiment_id = ids.experiment_id_of(run.project_id)
    files = await list_children(session, of_experiment(run.id), "", path or "")
    answer: dict[str, Any] = {
        "root_uri": f"mlflow-artifacts:/{experiment_id}/{run.id.hex}/artifacts",
    }
    if files:
        answer["files"] = files
    return answer
