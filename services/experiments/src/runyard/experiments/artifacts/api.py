from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse

from runyard.experiments import errors
from runyard.experiments.artifacts import service
from runyard.experiments.artifacts.repository import of_experiment
from runyard.experiments.artifacts.schemas import ArtifactOut
from runyard.experiments.artifacts.store import ArtifactStore, make_store
from runyard.experiments.deps import ServiceRuntime, get_service_runtime
from runyard.experiments.models import Artifact
from runyard.shared.identity import CurrentPrincipal
from runyard.shared.pagination import DEFAULT_LIMIT, CursorParam, Limit, Page
from runyard.shared.runtime import SessionDep

router = APIRouter(prefix="/api/v1/experiments", tags=["artifacts"])

RuntimeDep = Annotated[ServiceRuntime, Depends(get_service_runtime)]


async def artifact_store(request: Request, runtime: RuntimeDep) -> ArtifactStore:
    """The process's store, made on first use (an S3 client is worth keeping)."""
    store: ArtifactStore | None = getattr(request.app.state, "artifact_store", None)
    if store is None:
        store = make_store(runtime.settings)
        request.app.state.artifact_store = store
    return store


StoreDep = Annotated[ArtifactStore, Depends(artifact_store)]
PATH_RESPONSES: dict[int | str, dict[str, str]] = {
    404: {"description": "no such experiment (or not yours), or no artifact at that path"},
    422: {"description": "invalid path: absolute, `..`, empty names, NUL, too long"},
}


def content_length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    if value is None:
        return None
    try:
        length = int(value)
    except ValueError:
        raise errors.BadRequest("Content-Length is not a number.", loc=["header"]) from None
    if length < 0:
        raise errors.BadRequest("Content-Length is negative.", loc=["header"])
    return length


@router.put(
    "/{experiment_id}/artifacts/{artifact_path:path}",
    response_model=ArtifactOut,
    status_code=201,
    responses={
        **PATH_RESPONSES,
        200: {"description": "replaced the artifact that was at the path", "model": ArtifactOut},
        403: {"description": "viewers cannot upload"},
        413: {
            "description": "larger than EXPERIMENTS_ARTIFACT_MAX_BYTES, or past the owner's "
            "EXPERIMENTS_ARTIFACT_USER_QUOTA_BYTES"
        },
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    },
)
async def upload_artifact(
    experiment_id: uuid.UUID,
    artifact_path: str,
    request: Request,
    response: Response,
    principal: CurrentPrincipal,
    runtime: RuntimeDep,
    store: StoreDep,
) -> ArtifactOut:
    """The request body is the file, streamed to the store (never held whole); its
    `Content-Type` is kept (or guessed from the path's suffix). A file already at the path is
    replaced (200). Publishes `artifact.created`."""
    artifact, replaced = await service.upload(
        runtime.sessionmaker,
        store,
        runtime.settings,
        principal=principal,
        holder=of_experiment(experiment_id),
        path=artifact_path,
        body=request.stream(),
        content_length=content_length(request),
        content_type=request.headers.get("content-type"),
    )
    if replaced:
        response.status_code = 200
    return ArtifactOut.model_validate(artifact)


@router.get("/{experiment_id}/artifacts", response_model=Page[ArtifactOut])
async def list_artifacts(
    experiment_id: uuid.UUID,
    session: SessionDep,
    principal: CurrentPrincipal,
    prefix: Annotated[
        str, Query(max_length=1024, description="only paths starting with this (`plots/`)")
    ] = "",
    limit: Limit = DEFAULT_LIMIT,
    cursor: CursorParam = None,
) -> Page[ArtifactOut]:
    """By path."""
    rows, next_cursor = await service.list_artifacts(
        session,
        principal=principal,
        holder=of_experiment(experiment_id),
        prefix=prefix,
        limit=limit,
        cursor=cursor,
    )
    return Page[ArtifactOut](
        items=[ArtifactOut.model_validate(r) for r in rows], next_cursor=next_cursor
    )


#: what a file's download answers besides errors of its path
DOWNLOAD_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "the file", "content": {"application/octet-stream": {}}},
    206: {"description": "the requested byte range (`Range: bytes=start-end`)"},
    416: {"description": "the range lies outside the file"},
}


@router.get(
    "/{experiment_id}/artifacts/{artifact_path:path}",
    response_class=StreamingResponse,
    responses={**PATH_RESPONSES, **DOWNLOAD_RESPONSES},
)
@router.head(
    "/{experiment_id}/artifacts/{artifact_path:path}",
    operation_id="head_artifact",
    summary="The headers of a download, without the bytes",
    response_class=StreamingResponse,
    responses={**PATH_RESPONSES, 206: {"description": "the headers of the byte range"}},
)
async def download_artifact(
    experiment_id: uuid.UUID,
    artifact_path: str,
    request: Request,
    principal: CurrentPrincipal,
    runtime: RuntimeDep,
    store: StoreDep,
) -> StreamingResponse:
    """The file, streamed; one `Range` (`bytes=0-99`, `bytes=100-`, `bytes=-100`) gives 206
    with `Content-Range`. `ETag` is the content's SHA-256. `HEAD` answers the same headers
    without the bytes."""
    async with runtime.sessionmaker() as session, session.begin():
        artifact = await service.get_artifact(
            session, principal=principal, holder=of_experiment(experiment_id), path=artifact_path
        )
    return artifact_response(artifact, store, request)


def artifact_response(
    artifact: Artifact, store: ArtifactStore, request: Request
) -> StreamingResponse:
    """The artifact's bytes as a streamed response (206 for one satisfiable ``Range``; only the
    headers for ``HEAD``); also what MLflow's artifact proxy answers a download with."""
    range_header = request.headers.get("range")
    head = request.method == "HEAD"
    wanted = service.byte_range(range_header, artifact.size)
    start, end = (wanted.start, wanted.end) if wanted else (0, artifact.size - 1)
    name = artifact.path.rsplit("/", 1)[-1]
    headers = {
        "Accept-Ranges": "bytes",
        "ETag": f'"{artifact.sha256}"',
        "Content-Length": str(end - start + 1),
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}",
    }
    if wanted is not None:
        headers["Content-Range"] = f"bytes {start}-{end}/{artifact.size}"

    async def chunks() -> AsyncIterator[bytes]:
        if end >= start and not head:
            async for chunk in store.read(artifact.sha256, start, end):
                yield chunk

    return StreamingResponse(
        chunks(),
        status_code=206 if wanted is not None else 200,
        media_type=artifact.content_type,
        headers=headers,
    )


@router.delete(
    "/{experiment_id}/artifacts/{artifact_path:path}",
    status_code=204,
    responses={**PATH_RESPONSES, 403: {"description": "viewers cannot delete"}},
)
async def delete_artifact(
    experiment_id: uuid.UUID,
    artifact_path: str,
    principal: CurrentPrincipal,
    runtime: RuntimeDep,
    store: StoreDep,
) -> Response:
    """Publishes `artifact.deleted`; the bytes go when no other artifact has the same content."""
    await service.delete_artifact(
        runtime.sessionmaker,
        store,
        principal=principal,
        holder=of_experiment(experiment_id),
        path=artifact_path,
    )
    return Response(status_code=204)
