"""MLflow's Model Registry endpoints (``/api/2.0/mlflow/registered-models/...`` and
``/api/2.0/mlflow/model-versions/...``), under both ``/api/2.0`` and ``/ajax-api/2.0``. What
maps where: ``registry``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from runyard.experiments.mlflow import registry
from runyard.experiments.mlflow.errors import MlflowRoute, error_responses, invalid
from runyard.experiments.registry import service
from runyard.shared.identity import CurrentPrincipal
from runyard.shared.runtime import SessionDep

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])
router = APIRouter(route_class=MlflowRoute, tags=["mlflow"], responses=error_responses())
PREFIXES = ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow")
Text = Annotated[str | None, Query(max_length=5000)]


@dataclass(frozen=True)
class Search:
    """The query of MLflow's registry searches (registered models, model versions)."""

    filter_string: str | None
    max_results: int | None
    order_by: list[str] | None
    page_token: str | None

    def kwargs(self) -> dict[str, Any]:
        return {
            "filter_string": self.filter_string,
            "max_results": self.max_results,
            "order_by": self.order_by,
            "page_token": self.page_token,
        }

    @staticmethod
    def answer(key: str, found: list[dict[str, Any]], token: str | None) -> dict[str, Any]:
        return {key: found, **({"next_page_token": token} if token else {})}


async def search_query(
    filter: Text = None,
    max_results: Annotated[int | None, Query()] = None,
    order_by: Annotated[list[str] | None, Query()] = None,
    page_token: Annotated[str | None, Query(max_length=2048)] = None,
) -> Search:
    return Search(filter, max_results, order_by, page_token)


SearchDep = Annotated[Search, Depends(search_query)]


class Loose(BaseModel):
    """MLflow's JSON: unknown fields are ignored, as by the protobuf parser."""

    model_config = ConfigDict(extra="ignore")


class Tag(Loose):
    key: str | None = None
    value: str | None = None


class Named(Loose):
    name: str | None = None


class CreateModel(Named):
    description: str | None = Field(default=None, max_length=10_000)
    tags: list[Tag] = []


class RenameModel(Named):
    new_name: str | None = None


class UpdateModel(Named):
    description: str | None = Field(default=None, max_length=10_000)


class ModelTag(Named):
    key: str | None = None
    value: str | None = None


class LatestVersions(Named):
    stages: list[str] = []


class AliasBody(Named):
    alias: str | None = None
    version: str | int | None = None


class CreateVersion(Named):
    source: str | None = Field(default=None, max_length=2048)
    run_id: str | None = None
    model_id: str | None = None
    run_link: str | None = None
    description: str | None = Field(default=None, max_length=10_000)
    tags: list[Tag] = []


class VersionRef(Named):
    version: str | int | None = None


class UpdateVersion(VersionRef):
    description: str | None = Field(default=None, max_length=10_000)


class VersionTag(VersionRef):
    key: str | None = None
    value: str | None = None


class TransitionStage(VersionRef):
    stage: str | None = None
    archive_existing_versions: bool = False


def routes(path: str, methods: list[str]) -> Callable[[Endpoint], Endpoint]:
    """Register the endpoint under both prefixes (the second hidden from the schema)."""

    def register(endpoint: Endpoint) -> Endpoint:
        for i, prefix in enumerate(PREFIXES):
            router.add_api_route(prefix + path, endpoint, methods=methods, include_in_schema=i == 0)
        return endpoint

    return register


def tag_dict(tags: list[Tag]) -> dict[str, str]:
    return dict(registry.check_tag(t.key, t.value) for t in tags)


# --- registered models ---------------------------------------------------------------------------


@routes("/registered-models/create", ["POST"])
async def create_registered_model(
    body: CreateModel, session: SessionDep, principal: CurrentPrincipal
) -> dict[str, Any]:
    model = await registry.create_model(
        session, principal, body.name, body.description, tag_dict(body.tags)
    )
    return {"registered_model": await registry.model_json(session, model, latest=False)}


@routes("/registered-models/get", ["GET"])
async def get_registered_model(
    session: SessionDep, principal: CurrentPrincipal, name: Text = None
) -> dict[str, Any]:
    model = await registry.get_model(session, principal, name)
    return {"registered_model": await registry.model_json(session, model)}


@routes("/registered-models/rename", ["POST"])
async def rename_registered_model(
    body: RenameModel, session: SessionDep, principal: CurrentPrincipal
) -> dict[str, Any]:
    model = await registry.rename_model(session, principal, body.name, body.new_name)
    return {"registered_model": await registry.model_json(session, model)}


@routes("/registered-models/update", ["PATCH"])
async def update_registered_model(
    body: UpdateModel, session: SessionDep, principal: CurrentPrincipal
) -> dict[str, Any]:
    model = await registry.get_model(session, principal, body.name, write=True)
    if body.description is not None:
        model.description = body.description
        await session.flush()
    return {"registered_model": await registry.model_json(session, model)}


@routes("/registered-models/delete", ["DELETE"])
async def delete_registered_model(
    body: Named, session: SessionDep, principal: CurrentPrincipal
) -> dict[str, Any]:
    model = await registry.get_model(session, principal, body.name, write=True)
    await service.delete_model(session, model=model)
    return {}


@routes("/registered-models/search", ["GET"])
async def search_registered_models(
    search: SearchDep, session: SessionDep, principal: CurrentPrincipal
) -> dict[str, Any]:
    models, token = await registry.search_models(session, principal, **search.kwargs())
    found = [await registry.model_json(session, m) for m in models]
    return search.answer("registered_models", found, token)


@routes("/registered-models/set-tag", ["POST"])
async def set_registered_model_tag(
    body: ModelTag, session: SessionDep, principal: CurrentPrincipal
) -> dict[str, Any]:
    key, value = registry.check_tag(body.key, body.value)
    model = await registry.get_model(session, principal, body.name, write=True)
    await registry.set_model_tag(model, key, value)
    await session.flush()
    return {}


@routes("/registered-models/delete-tag", ["DELETE"])
async def delete_registered_model_tag(
    body: ModelTag, session: SessionDep, principal: CurrentPrincipal
) -> dict[str, Any]:
    if not body.key:
        raise invalid("Missing value for required parameter 'key'.")
    model = await registry.get_model(session, principal, body.name, write=True)
    registry.delete_model_tag(model, body.key)
    await session.flush()
    return {}


@routes("/registered-models/get-latest-versions", ["POST"])
async def get_latest_versions(
    body: LatestVersions, session: SessionDep, principal: CurrentPrincipal
) -> dict[str, Any]:
    model = await registry.get_model(session, principal, body.name)
    found = await registry.latest_versions(session, model, body.stages)
    return {"model_versions": await registry.versions_json(session, [(model, v) for v in found])}


@routes("/registered-models/alias", ["POST"])
async def set_registered_model_alias(
    body: AliasBody, session: SessionDep, principal: CurrentPrincipal
) -> dict[str, Any]:
    await registry.set_alias(session, principal, body.name, body.alias, body.version)
    return {}


@routes("/registered-models/alias", ["DELETE"])
async def delete_registered_model_alias(
    body: AliasBody, session: SessionDep, principal: CurrentPrincipal
) -> dict[str, Any]:
    await registry.delete_alias(session, principal, body.name, body.alias)
    return {}


@routes("/registered-models/alias", ["GET"])
async def get_model_version_by_alias(
    session: SessionDep, principal: CurrentPrincipal, name: Text = None, alias: Text = None
) -> dict[str, Any]:
    model, version = await registry.version_by_alias(session, principal, name, alias)
    return {"model_version": (await registry.versions_json(session, [(model, version)]))[0]}


# --- model versions ------------------------------------------------------------------------------


@routes("/model-versions/create", ["POST"])
async def create_model_version(
    body: CreateVersion, session: SessionDep, principal: CurrentPrincipal
) -> dict[str, Any]:
    """From the run's artifacts: ``source`` ``runs:/<run_id>/<path>``, the run's
    ``mlflow-artifacts:/`` URI or ``models:/<logged model id>``."""
    model, version = await registry.create_version(
        session,
        principal,
        name=body.name,
        source=body.source,
        run_id=body.run_id,
        model_id=body.model_id,
        description=body.description,
        tags=tag_dict(body.tags),
    )
    return {"model_version": (await registry.versions_json(session, [(model, version)]))[0]}


@routes("/model-versions/get", ["GET"])
async def get_model_version(
    session: SessionDep, principal: CurrentPrincipal, name: Text = None, version: Text = None
) -> dict[str, Any]:
    model, found = await registry.get_version(session, principal, name, version)
    return {"model_version": (await registry.versions_json(session, [(model, found)]))[0]}


@routes("/model-versions/update", ["PATCH"])
async def update_model_version(
    body: UpdateVersion, session: SessionDep, principal: CurrentPrincipal
) -> dict[str, Any]:
    model, found = await registry.get_version(
        session, principal, body.name, body.version, write=True
    )
    if body.description is not None:
        found.description = body.description
        await session.flush()
    return {"model_version": (await registry.versions_json(session, [(model, found)]))[0]}


@routes("/model-versions/delete", ["DELETE"])
async def delete_model_version(
    body: VersionRef, session: SessionDep, principal: CurrentPrincipal
) -> dict[str, Any]:
    """Refused (``INVALID_STATE``) while the version holds an alias."""
    model, found = await registry.get_version(
        session, principal, body.name, body.version, write=True
    )
    await service.delete_version(session, model=model, version=found)
    return {}


@routes("/model-versions/search", ["GET"])
async def search_model_versions(
    search: SearchDep, session: SessionDep, principal: CurrentPrincipal
) -> dict[str, Any]:
    pairs, token = await registry.search_versions(session, principal, **search.kwargs())
    found = await registry.versions_json(session, pairs)
    return search.answer("model_versions", found, token)


@routes("/model-versions/set-tag", ["POST"])
async def set_model_version_tag(
    body: VersionTag, session: SessionDep, principal: CurrentPrincipal
) -> dict[str, Any]:
    key, value = registry.check_tag(body.key, body.value)
    _, found = await registry.get_version(session, principal, body.name, body.version, write=True)
    found.tags = {**found.tags, key: value}
    await session.flush()
    return {}


@routes("/model-versions/delete-tag", ["DELETE"])
async def delete_model_version_tag(
    body: VersionTag, session: SessionDep, principal: CurrentPrincipal
) -> dict[str, Any]:
    if not body.key:
        raise invalid("Missing value for required parameter 'key'.")
    _, found = await registry.get_version(session, principal, body.name, body.version, write=True)
    if body.key in found.tags:
        found.tags = {k: v for k, v in found.tags.items() if k != body.key}
        await session.flush()
    return {}


@routes("/model-versions/transition-stage", ["POST"])
async def transition_model_version_stage(
    body: TransitionStage, session: SessionDep, principal: CurrentPrincipal
) -> dict[str, Any]:
    """Only ``Archived`` (archives the version): MLflow 3 deprecates stages for aliases."""
    model, found = await registry.transition_stage(
        session, principal, body.name, body.version, body.stage
    )
    return {"model_version": (await registry.versions_json(session, [(model, found)]))[0]}


@routes("/model-versions/get-download-uri", ["GET"])
async def get_model_version_download_uri(
    session: SessionDep, principal: CurrentPrincipal, name: Text = None, version: Text = None
) -> dict[str, Any]:
    _, found = await registry.get_version(session, principal, name, version)
    return {"artifact_uri": await registry.download_uri(session, found)}
