"""MLflow's experiment endpoints (``experiments/*``) on Runyard projects."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from runyard.experiments.mlflow import dataset_summaries, schemas
from runyard.experiments.mlflow import service_experiments as service
from runyard.experiments.mlflow.errors import MlflowRoute, error_responses
from runyard.experiments.mlflow.routing import both_prefixes
from runyard.shared.identity import CurrentPrincipal
from runyard.shared.runtime import SessionDep

routes = APIRouter(prefix="/experiments", route_class=MlflowRoute, responses=error_responses())


@routes.post("/create")
async def create_experiment(
    body: schemas.CreateExperiment, session: SessionDep, principal: CurrentPrincipal
) -> dict[str, Any]:
    experiment_id = await service.create_experiment(
        session, principal, body.name, body.artifact_location, schemas.as_dict(body.tags)
    )
    return {"experiment_id": experiment_id}


@routes.get("/get")
async def get_experiment(
    session: SessionDep, principal: CurrentPrincipal, experiment_id: str | None = None
) -> dict[str, Any]:
    return {"experiment": await service.get_experiment(session, principal, experiment_id)}


@routes.get("/get-by-name")
async def get_experiment_by_name(
    session: SessionDep, principal: CurrentPrincipal, experiment_name: str | None = None
) -> dict[str, Any]:
    experiment = await service.get_experiment_by_name(session, principal, experiment_name)
    return {"experiment": experiment}


async def _search(
    session: SessionDep, principal: CurrentPrincipal, body: schemas.SearchExperiments
) -> dict[str, Any]:
    found, token = await service.search_experiments(
        session,
        principal,
        filter=body.filter,
        view=service.view_type(body.view_type),
        max_results=body.max_results,
        order_by=body.order_by,
        page_token=body.page_token or None,
    )
    return {"experiments": found, **({"next_page_token": token} if token else {})}


@routes.post("/search")
async def search_experiments(
    body: schemas.SearchExperiments, session: SessionDep, principal: CurrentPrincipal
) -> dict[str, Any]:
    return await _search(session, principal, body)


@routes.get("/search")
async def search_experiments_get(
    session: SessionDep,
    principal: CurrentPrincipal,
    max_results: int | None = None,
    page_token: str | None = None,
    filter: str | None = None,
    order_by: Annotated[list[str] | None, Query()] = None,
    view_type: str | None = None,
) -> dict[str, Any]:
    body = schemas.SearchExperiments(
        max_results=max_results,
        page_token=page_token,
        filter=filter,
        order_by=order_by or [],
        view_type=view_type,
    )
    return await _search(session, principal, body)


@routes.post("/search-datasets")
async def search_datasets(
    request: Request, session: SessionDep, principal: CurrentPrincipal
) -> dict[str, Any]:
    """The MLflow UI's dataset list: one summary per (experiment, name, digest, context) of the
    datasets the experiments' runs logged as inputs (at most 20 experiments, 1,000 summaries).
    The body is read as MLflow's server reads it (JSON required; a malformed body names no
    experiment)."""
    wanted = await dataset_summaries.requested_experiment_ids(request)
    found = await dataset_summaries.search_datasets(session, principal, wanted)
    return {"dataset_summaries": found} if found else {}


@routes.post("/update")
async def update_experiment(
    body: schemas.UpdateExperiment, session: SessionDep, principal: CurrentPrincipal
) -> dict[str, Any]:
    await service.rename_experiment(session, principal, body.experiment_id, body.new_name)
    return {}


@routes.post("/delete")
async def delete_experiment(
    body: schemas.ExperimentRef, session: SessionDep, principal: CurrentPrincipal
) -> dict[str, Any]:
    await service.delete_experiment(session, principal, body.experiment_id)
    return {}


@routes.post("/restore")
async def restore_experiment(
    body: schemas.ExperimentRef, session: SessionDep, principal: CurrentPrincipal
) -> dict[str, Any]:
    await service.restore_experiment(session, principal, body.experiment_id)
    return {}


@routes.post("/set-experiment-tag")
async def set_experiment_tag(
    body: schemas.SetExperimentTag, session: SessionDep, principal: CurrentPrincipal
) -> dict[str, Any]:
    await service.set_experiment_tag(session, principal, body.experiment_id, body.key, body.value)
    return {}


@routes.post("/delete-experiment-tag")
async def delete_experiment_tag(
    body: schemas.DeleteExperimentTag, session: SessionDep, principal: CurrentPrincipal
) -> dict[str, Any]:
    await service.delete_experiment_tag(session, principal, body.experiment_id, body.key)
    return {}


router, ajax_router = both_prefixes(routes, "mlflow")
