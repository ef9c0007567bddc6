from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import StreamingResponse
from sqlalchemy.ext.asyncio import AsyncSession

from runyard.experiments.artifacts.api import (
    DOWNLOAD_RESPONSES,
    RuntimeDep,
    StoreDep,
    artifact_response,
)
from runyard.experiments.errors import NotFound, ValidationFailed
from runyard.experiments.registry import repository, service
from runyard.experiments.registry.models import ModelVersion, RegisteredModel
from runyard.experiments.registry.schemas import (
    ALIAS_PATTERN,
    AliasOut,
    AliasSet,
    ModelCreate,
    ModelOut,
    ModelUpdate,
    VersionCreate,
    VersionFileOut,
    VersionOut,
    VersionStatus,
    VersionUpdate,
    reserved_alias,
)
from runyard.shared.identity import CurrentPrincipal
from runyard.shared.pagination import DEFAULT_LIMIT, CursorParam, Limit, Page
from runyard.shared.runtime import SessionDep

router = APIRouter(prefix="/api/v1/models", tags=["models"])

VersionNumber = Annotated[int, Path(ge=1, le=2**31 - 1, description="the version's number")]
AliasName = Annotated[str, Path(max_length=255, pattern=ALIAS_PATTERN)]


async def model_out(session: AsyncSession, model: RegisteredModel) -> ModelOut:
    aliases = await repository.aliases_by_model(session, [model.id])
    return ModelOut.model_validate(model).model_copy(update={"aliases": aliases[model.id]})


async def versions_out(session: AsyncSession, versions: Sequence[ModelVersion]) -> list[VersionOut]:
    aliases = await repository.aliases_by_version(session, [v.id for v in versions])
    return [
        VersionOut.model_validate(v).model_copy(update={"aliases": aliases[v.id]}) for v in versions
    ]


async def version_out(session: AsyncSession, version: ModelVersion) -> VersionOut:
    return (await versions_out(session, [version]))[0]


# --- registered models ---------------------------------------------------------------------------


@router.post(
    "",
    status_code=201,
    response_model=ModelOut,
    responses={409: {"description": "you already have a registered model of that name"}},
)
async def create_model(
    body: ModelCreate, session: SessionDep, principal: CurrentPrincipal
) -> ModelOut:
    model = await service.create_model(session, principal=principal, data=body)
    return await model_out(session, model)


@router.get("", response_model=Page[ModelOut])
async def list_models(
    session: SessionDep,
    principal: CurrentPrincipal,
    name: Annotated[str | None, Query(max_length=255, description="exactly this name")] = None,
    name_contains: Annotated[
        str | None, Query(max_length=255, description="names containing this (any case)")
    ] = None,
    name_prefix: Annotated[
        str | None, Query(max_length=255, description="names starting with this")
    ] = None,
    tag: Annotated[
        list[str] | None,
        Query(max_length=5300, description="`key` (has the tag) or `key=value`; repeatable"),
    ] = None,
    alias: Annotated[
        str | None, Query(max_length=255, description="models that have this alias")
    ] = None,
    owner_id: Annotated[
        uuid.UUID | None, Query(description="admins and viewers: only this owner's models")
    ] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: CursorParam = None,
) -> Page[ModelOut]:
    """Newest first; every filter given must hold."""
    rows, next_cursor = await repository.list_models(
        session,
        principal=principal,
        limit=limit,
        cursor=cursor,
        owner_id=owner_id,
        name=name,
        name_contains=name_contains,
        name_prefix=name_prefix,
        tags=tag,
        alias=alias,
    )
    aliases = await repository.aliases_by_model(session, [r.id for r in rows])
    items = [ModelOut.model_validate(r).model_copy(update={"aliases": aliases[r.id]}) for r in rows]
    return Page[ModelOut](items=items, next_cursor=next_cursor)


@router.get("/{model_id}", response_model=ModelOut)
async def get_model(
    model_id: uuid.UUID, session: SessionDep, principal: CurrentPrincipal
) -> ModelOut:
    model = await service.get_model(session, principal=principal, model_id=model_id)
    return await model_out(session, model)


@router.patch(
    "/{model_id}",
    response_model=ModelOut,
    responses={409: {"description": "the name is taken"}},
)
async def update_model(
    model_id: uuid.UUID, body: ModelUpdate, session: SessionDep, principal: CurrentPrincipal
) -> ModelOut:
    model = await service.get_model(session, principal=principal, model_id=model_id, write=True)
    await service.update_model(session, principal=principal, model=model, data=body)
    return await model_out(session, model)


@router.delete("/{model_id}", status_code=204)
async def delete_model(
    model_id: uuid.UUID, session: SessionDep, principal: CurrentPrincipal
) -> Response:
    """The model, its versions and its aliases."""
    model = await service.get_model(session, principal=principal, model_id=model_id, write=True)
    await service.delete_model(session, model=model)
    return Response(status_code=204)


# --- versions ------------------------------------------------------------------------------------


@router.post(
    "/{model_id}/versions",
    status_code=201,
    response_model=VersionOut,
    responses={422: {"description": "unknown experiment, bad artifact path or JSON Schema"}},
)
async def create_version(
    model_id: uuid.UUID, body: VersionCreate, session: SessionDep, principal: CurrentPrincipal
) -> VersionOut:
    """The model's next version (numbered from 1), made from the experiment's artifact: a file,
    or every file under a directory. ``status``: ``ready`` (size and SHA-256 recorded),
    ``pending`` (the experiment has not uploaded it yet: ``POST .../verify`` later; settled
    when the experiment ends) or
    ``failed`` (missing, and the experiment has ended)."""
    model = await service.get_model(session, principal=principal, model_id=model_id, write=True)
    version = await service.create_version(
        session,
        principal=principal,
        model=model,
        experiment_id=body.experiment_id,
        artifact_path=body.artifact_path,
        description=body.description,
        tags=body.tags,
        input_schema=body.input_schema,
        output_schema=body.output_schema,
    )
    return await version_out(session, version)


@router.get("/{model_id}/versions", response_model=Page[VersionOut])
async def list_versions(
    model_id: uuid.UUID,
    session: SessionDep,
    principal: CurrentPrincipal,
    status: VersionStatus | None = None,
    archived: Annotated[bool, Query(description="include archived versions")] = False,
    experiment_id: Annotated[
        uuid.UUID | None, Query(description="only versions made from this experiment")
    ] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: CursorParam = None,
) -> Page[VersionOut]:
    """Highest version first."""
    model = await service.get_model(session, principal=principal, model_id=model_id)
    rows, next_cursor = await repository.list_versions(
        session,
        model.id,
        limit=limit,
        cursor=cursor,
        status=status,
        archived=archived,
        experiment_id=experiment_id,
    )
    return Page[VersionOut](items=await versions_out(session, rows), next_cursor=next_cursor)


@router.get("/{model_id}/versions/{version}", response_model=VersionOut)
async def get_version(
    model_id: uuid.UUID, version: VersionNumber, session: SessionDep, principal: CurrentPrincipal
) -> VersionOut:
    model = await service.get_model(session, principal=principal, model_id=model_id)
    return await version_out(session, await service.get_version(session, model, version))


@router.get("/{model_id}/versions/{version}/files", response_model=list[VersionFileOut])
async def list_version_files(
    model_id: uuid.UUID, version: VersionNumber, session: SessionDep, principal: CurrentPrincipal
) -> list[VersionFileOut]:
    """The version's files as they are stored now (those of its experiment's `artifact_path`,
    or of its MLflow logged model), by path; empty while the version is pending. The version's
    `sha256` is the SHA-256 of their manifest (one `<sha256>  <path>` line per file), or a
    one-file version's file's own."""
    model = await service.get_model(session, principal=principal, model_id=model_id)
    row = await service.get_version(session, model, version)
    return [
        VersionFileOut(path=path, size=f.size, sha256=f.sha256, content_type=f.content_type)
        for path, f in await service.version_files(session, row)
    ]


@router.get(
    "/{model_id}/versions/{version}/files/{file_path:path}",
    response_class=StreamingResponse,
    responses={404: {"description": "no such model, version or file"}, **DOWNLOAD_RESPONSES},
)
@router.head(
    "/{model_id}/versions/{version}/files/{file_path:path}",
    operation_id="head_version_file",
    summary="The headers of a version file's download, without the bytes",
    response_class=StreamingResponse,
    responses={206: {"description": "the headers of the byte range"}},
)
async def download_version_file(
    model_id: uuid.UUID,
    version: VersionNumber,
    file_path: str,
    request: Request,
    principal: CurrentPrincipal,
    runtime: RuntimeDep,
    store: StoreDep,
) -> StreamingResponse:
    """One of the version's files (a path `files` lists), streamed as an experiment's artifact
    is: one `Range` gives 206 with `Content-Range`, `ETag` is the content's SHA-256."""
    async with runtime.sessionmaker() as session, session.begin():
        model = await service.get_model(session, principal=principal, model_id=model_id)
        row = await service.get_version(session, model, version)
        found = [f for path, f in await service.version_files(session, row) if path == file_path]
    if not found:
        raise NotFound("file of the model version")
    return artifact_response(found[0], store, request)


@router.patch("/{model_id}/versions/{version}", response_model=VersionOut)
async def update_version(
    model_id: uuid.UUID,
    version: VersionNumber,
    body: VersionUpdate,
    session: SessionDep,
    principal: CurrentPrincipal,
) -> VersionOut:
    model = await service.get_model(session, principal=principal, model_id=model_id, write=True)
    row = await service.get_version(session, model, version, lock=True)
    await service.update_version(session, version=row, data=body)
    return await version_out(session, row)


@router.post("/{model_id}/versions/{version}/verify", response_model=VersionOut)
async def verify_version(
    model_id: uuid.UUID, version: VersionNumber, session: SessionDep, principal: CurrentPrincipal
) -> VersionOut:
    """Look for a pending (or failed) version's artifact again: ``ready`` once it is there."""
    model = await service.get_model(session, principal=principal, model_id=model_id, write=True)
    row = await service.get_version(session, model, version, lock=True)
    await service.verify_version(session, version=row)
    return await version_out(session, row)


@router.post(
    "/{model_id}/versions/{version}/archive",
    response_model=VersionOut,
    responses={409: {"description": "the version holds an alias"}},
)
async def archive_version(
    model_id: uuid.UUID, version: VersionNumber, session: SessionDep, principal: CurrentPrincipal
) -> VersionOut:
    """Archived versions stay readable; lists leave them out unless ``archived=true``."""
    model = await service.get_model(session, principal=principal, model_id=model_id, write=True)
    row = await service.get_version(session, model, version, lock=True)
    await service.archive_version(session, model=model, version=row)
    return await version_out(session, row)


@router.delete(
    "/{model_id}/versions/{version}",
    status_code=204,
    responses={409: {"description": "the version holds an alias"}},
)
async def delete_version(
    model_id: uuid.UUID, version: VersionNumber, session: SessionDep, principal: CurrentPrincipal
) -> Response:
    """Its number is never handed out again."""
    model = await service.get_model(session, principal=principal, model_id=model_id, write=True)
    row = await service.get_version(session, model, version, lock=True)
    await service.delete_version(session, model=model, version=row)
    return Response(status_code=204)


# --- aliases -------------------------------------------------------------------------------------


@router.get("/{model_id}/aliases", response_model=list[AliasOut])
async def list_aliases(
    model_id: uuid.UUID, session: SessionDep, principal: CurrentPrincipal
) -> list[AliasOut]:
    model = await service.get_model(session, principal=principal, model_id=model_id)
    aliases = (await repository.aliases_by_model(session, [model.id]))[model.id]
    return [AliasOut(alias=a, version=v) for a, v in aliases.items()]


@router.put(
    "/{model_id}/aliases/{alias}",
    response_model=AliasOut,
    responses={409: {"description": "the version is archived"}},
)
async def set_alias(
    model_id: uuid.UUID,
    alias: AliasName,
    body: AliasSet,
    session: SessionDep,
    principal: CurrentPrincipal,
) -> AliasOut:
    """Point the alias at the version (creating it, or moving it from the version it held:
    ``previous_version``). ``latest`` and ``v<number>`` are reserved."""
    model = await service.get_model(session, principal=principal, model_id=model_id, write=True)
    change = await service.set_alias(
        session, model=model, alias=check_alias(alias), number=body.version
    )
    return AliasOut(
        alias=change.alias, version=change.version.version, previous_version=change.previous_version
    )


@router.get("/{model_id}/aliases/{alias}", response_model=VersionOut)
async def get_version_by_alias(
    model_id: uuid.UUID, alias: str, session: SessionDep, principal: CurrentPrincipal
) -> VersionOut:
    """The version the alias points at."""
    model = await service.get_model(session, principal=principal, model_id=model_id)
    return await version_out(session, await service.version_by_alias(session, model, alias))


@router.delete("/{model_id}/aliases/{alias}", status_code=204)
async def delete_alias(
    model_id: uuid.UUID, alias: str, session: SessionDep, principal: CurrentPrincipal
) -> Response:
    model = await service.get_model(session, principal=principal, model_id=model_id, write=True)
    await service.delete_alias(session, model=model, alias=alias)
    return Response(status_code=204)


def check_alias(alias: str) -> str:
    """422 naming the path parameter for a reserved alias."""
    if reserved_alias(alias):
        raise ValidationFailed(
            f"The alias {alias!r} is reserved ('latest' and 'v<number>' name versions).",
            loc=["path", "alias"],
            msg="reserved alias",
        )
    return alias
