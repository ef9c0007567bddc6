"""MLflow 3's logged-model endpoints (``/api/2.0/mlflow/logged-models...``), under both
``/api/2.0`` and ``/ajax-api/2.0`` (the UI's file download under ``/ajax-api`` only, as in
MLflow). The use cases and what maps where: ``logged_models``. (A run's outputs,
``runs/outputs``, are the runs API's.)"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from runyard.experiments.artifacts.api import RuntimeDep, StoreDep
from runyard.experiments.mlflow import logged_models as service
from runyard.experiments.mlflow.artifacts_api import (
    check_safe,
    clean,
    list_children,
    logged_models_location,
)
from runyard.experiments.mlflow.errors import MlflowError, MlflowRoute, error_responses
from runyard.experiments.mlflow.ui_artifacts_api import download, file_of
from runyard.shared.identity import CurrentPrincipal
from runyard.shared.runtime import SessionDep

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])
router = APIRouter(route_class=MlflowRoute, tags=["mlflow"], responses=error_responses())
PREFIXES = ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow")


class Loose(BaseModel):
    """MLflow's JSON: unknown fields are ignored, as by the protobuf parser."""

    model_config = ConfigDict(extra="ignore")


class KeyValue(Loose):
    key: str = Field(min_length=1, max_length=250)
    value: str | None = Field(default=None, max_length=8000)


class CreateLoggedModel(Loose):
    experiment_id: str = Field(min_length=1)
    name: str | None = None
    model_type: str | None = Field(default=None, max_length=255)
    source_run_id: str | None = None
    params: list[KeyValue] = []
    tags: list[KeyValue] = []


class FinalizeLoggedModel(Loose):
    status: int | str


class LogParams(Loose):
    params: list[KeyValue] = []


class SetTags(Loose):
    tags: list[KeyValue] = []


class Dataset(Loose):
    dataset_name: str | None = None
    dataset_digest: str | None = None


class OrderBy(Loose):
    field_name: str
    ascending: bool = True
    dataset_name: str | None = None
    dataset_digest: str | None = None


class SearchLoggedModels(Loose):
    experiment_ids: list[str] = Field(min_length=1)
    filter: str | None = None
    datasets: list[Dataset] = []
    max_results: int | None = None
    order_by: list[OrderBy] = []
    page_token: str | None = None


def pairs(items: list[KeyValue]) -> dict[str, str]:
    return service.pairs((i.model_dump() for i in items), "key/value pair")


def routes(path: str, methods: list[str]) -> Callable[[Endpoint], Endpoint]:
    """Register the endpoint under both prefixes (the second hidden from the schema)."""

    def register(endpoint: Endpoint) -> Endpoint:
        for i, prefix in enumerate(PREFIXES):
            router.add_api_route(prefix + path, endpoint, methods=methods, include_in_schema=i == 0)
        return endpoint

    return register


@routes("/logged-models", ["POST"])
async def create_logged_model(
    body: CreateLoggedModel, session: SessionDep, principal: CurrentPrincipal
) -> dict[str, Any]:
    """A PENDING model; its source run keeps its files (``models/<model_id>/``)."""
    model = await service.create(
        session,
        principal,
        experiment_id=body.experiment_id,
        name=body.name,
        model_type=body.model_type,
        source_run_id=body.source_run_id,
        params=pairs(body.params),
        tags=pairs(body.tags),
    )
    return {"model": service.to_mlflow(model)}


@routes("/logged-models/search", ["POST"])
async def search_logged_models(
    body: SearchLoggedModels, session: SessionDep, principal: CurrentPrincipal
) -> dict[str, Any]:
    models, token = await service.search(
        session,
        principal,
        experiment_ids=body.experiment_ids,
        filter_string=body.filter,
        datasets=[d.model_dump() for d in body.datasets] or None,
        max_results=body.max_results,
        order_by=[o.model_dump() for o in body.order_by] or None,
        page_token=body.page_token,
    )
    answer: dict[str, Any] = {"models": [service.to_mlflow(m) for m in models]}
    if token:
        answer["next_page_token"] = token
    return answer


@routes("/logged-models/{model_id}", ["GET"])
async def get_logged_model(
    model_id: str,
    session: SessionDep,
    principal: CurrentPrincipal,
    allow_deleted: Annotated[bool, Query()] = False,
) -> dict[str, Any]:
    model = await service.get(session, principal, model_id, allow_deleted=allow_deleted)
    return {"model": service.to_mlflow(model)}


@routes("/logged-models/{model_id}", ["PATCH"])
async def finalize_logged_model(
    model_id: str, body: FinalizeLoggedModel, session: SessionDep, principal: CurrentPrincipal
) -> dict[str, Any]:
    model = await service.finalize(session, principal, model_id, body.status)
    return {"model": service.to_mlflow(model)}


@routes("/logged-models/{model_id}", ["DELETE"])
async def delete_logged_model(
    model_id: str, session: SessionDep, principal: CurrentPrincipal
) -> dict[str, Any]:
    """Soft: the model (and its files) can still be read with ``allow_deleted``."""
    await service.delete(session, principal, model_id)
    return {}


@routes("/logged-models/{model_id}/params", ["POST"])
async def log_logged_model_params(
    model_id: str, body: LogParams, session: SessionDep, principal: CurrentPrincipal
) -> dict[str, Any]:
    await service.log_params(session, principal, model_id, pairs(body.params))
    return {}


@routes("/logged-models/{model_id}/tags", ["PATCH"])
async def set_logged_model_tags(
    model_id: str, body: SetTags, session: SessionDep, principal: CurrentPrincipal
) -> dict[str, Any]:
    await service.set_tags(session, principal, model_id, pairs(body.tags))
    return {}


@routes("/logged-models/{model_id}/tags/{tag_key:path}", ["DELETE"])
async def delete_logged_model_tag(
    model_id: str, tag_key: str, session: SessionDep, principal: CurrentPrincipal
) -> dict[str, Any]:
    await service.delete_tag(session, principal, model_id, tag_key)
    return {}


@routes("/logged-models/{model_id}/artifacts/directories", ["GET"])
async def list_logged_model_artifacts(
    model_id: str,
    session: SessionDep,
    principal: CurrentPrincipal,
    artifact_directory_path: Annotated[str | None, Query(max_length=1024)] = None,
) -> dict[str, Any]:
    """The direct children of a directory of the model's files (paths relative to the
    model's artifact root)."""
    model = await service.get(session, principal, model_id, allow_deleted=True)
    root = service.to_mlflow(model)["info"]["artifact_uri"]
    where = logged_models_location(model, "")
    files = await list_children(session, where.holder, where.prefix, artifact_directory_path or "")
    return {"root_uri": root, "files": files}


@router.get(PREFIXES[1] + "/logged-models/{model_id}/artifacts/files", include_in_schema=False)
@router.head(PREFIXES[1] + "/logged-models/{model_id}/artifacts/files", include_in_schema=False)
async def get_logged_model_artifact(
    model_id: str,
    request: Request,
    principal: CurrentPrincipal,
    runtime: RuntimeDep,
    store: StoreDep,
    artifact_file_path: Annotated[str | None, Query(max_length=2048)] = None,
) -> StreamingResponse:
    """The MLflow UI's download of one of the model's files (``artifact_file_path`` relative to
    the model's artifact root), streamed as ``get-artifact`` streams a run's file. The path is
    checked before the model is looked up; a deleted model, or another user's, does not
    exist."""
    if not artifact_file_path:
        raise MlflowError(
            'Request must include the "artifact_file_path" query parameter.', "BAD_REQUEST"
        )
    path = check_safe(artifact_file_path)
    async with runtime.sessionmaker() as session, session.begin():
        model = await service.get(session, principal, model_id)
        where = logged_models_location(model, "")
        name = clean(path)
        wanted = where.prefix + name if name else ""
        artifact = await file_of(session, principal, where.holder, wanted, path)
    return download(artifact, store, request)
