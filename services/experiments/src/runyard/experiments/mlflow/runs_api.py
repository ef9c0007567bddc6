"""MLflow's run and metric endpoints (``runs/*``, ``metrics/*``) on Runyard experiments."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from runyard.experiments.mlflow import metrics as metric_store
from runyard.experiments.mlflow import schemas
from runyard.experiments.mlflow import service_runs as service
from runyard.experiments.mlflow.convert import LatestMetric, metric_json
from runyard.experiments.mlflow.errors import MlflowRoute, error_responses, invalid
from runyard.experiments.mlflow.routing import both_prefixes
from runyard.experiments.mlflow.service_experiments import (
    DEFAULT_MAX_RESULTS,
    MAX_RESULTS,
    project_ids,
    view_type,
)
from runyard.shared.identity import CurrentPrincipal
from runyard.shared.runtime import SessionDep

#: MLflow's limits of the bulk metric reads
MAX_RUNS_BULK = 100
MAX_RESULTS_PER_RUN = 2500
MAX_HISTORY_BULK_RESULTS = 25000

runs = APIRouter(prefix="/runs", route_class=MlflowRoute, responses=error_responses())
metrics = APIRouter(prefix="/metrics", route_class=MlflowRoute, responses=error_responses())


@runs.post("/create")
async def create_run(
    body: schemas.CreateRun, session: SessionDep, principal: CurrentPrincipal
) -> dict[str, Any]:
    run = await service.create_run(
        session,
        principal,
        experiment_id=body.experiment_id,
        start_time=body.start_time,
        tags=body.tags,
        run_name=body.run_name,
    )
    return {"run": await service.run_json(session, run)}


@runs.get("/get")
async def get_run(
    session: SessionDep,
    principal: CurrentPrincipal,
    run_id: str | None = None,
    run_uuid: str | None = None,
) -> dict[str, Any]:
    run = await service.visible_run(session, principal, run_id or run_uuid)
    return {"run": await service.run_json(session, run)}


@runs.post("/update")
async def update_run(
    body: schemas.UpdateRun, session: SessionDep, principal: CurrentPrincipal
) -> dict[str, Any]:
    run = await service.update_run(
        session,
        principal,
        body.id,
        status=body.status,
        end_time=body.end_time,
        run_name=body.run_name,
    )
    return {"run_info": await service.run_info_json(session, run)}


@runs.post("/delete")
async def delete_run(
    body: schemas.RunRef, session: SessionDep, principal: CurrentPrincipal
) -> dict[str, Any]:
    await service.delete_run(session, principal, body.id)
    return {}


@runs.post("/restore")
async def restore_run(
    body: schemas.RunRef, session: SessionDep, principal: CurrentPrincipal
) -> dict[str, Any]:
    await service.restore_run(session, principal, body.id)
    return {}


@runs.post("/search")
async def search_runs(
    body: schemas.SearchRuns, session: SessionDep, principal: CurrentPrincipal
) -> dict[str, Any]:
    from runyard.experiments.mlflow.search import search_runs as search

    limit = DEFAULT_MAX_RESULTS if body.max_results is None else body.max_results
    if not 1 <= limit <= MAX_RESULTS:
        raise invalid(
            f"Invalid value {limit} for parameter 'max_results' supplied. It must be at most "
            f"{MAX_RESULTS}, and a positive integer."
        )
    found, token = await search(
        session,
        principal=principal,
        experiment_ids=project_ids(body.experiment_ids),
        filter=body.filter or None,
        view_type=view_type(body.run_view_type),
        max_results=limit,
        order_by=body.order_by,
        page_token=body.page_token or None,
    )
    return {
        "runs": await service.runs_json(session, found),
        **({"next_page_token": token} if token else {}),
    }


@runs.post("/log-metric")
async def log_metric(
    body: schemas.LogMetric, session: SessionDep, principal: CurrentPrincipal
) -> dict[str, Any]:
    await service.log_batch(
        session, principal, body.id, metrics=[body.metric()], params=[], tags=[], batch=False
    )
    return {}


@runs.post("/log-parameter")
async def log_parameter(
    body: schemas.LogParam, session: SessionDep, principal: CurrentPrincipal
) -> dict[str, Any]:
    param = schemas.KeyValue(key=body.key, value=body.value)
    await service.log_batch(
        session, principal, body.id, metrics=[], params=[param], tags=[], batch=False
    )
    return {}


@runs.post("/set-tag")
async def set_tag(
    body: schemas.SetTag, session: SessionDep, principal: CurrentPrincipal
) -> dict[str, Any]:
    tag = schemas.KeyValue(key=body.key, value=body.value)
    await service.log_batch(
        session, principal, body.id, metrics=[], params=[], tags=[tag], batch=False
    )
    return {}


@runs.post("/delete-tag")
async def delete_tag(
    body: schemas.DeleteTag, session: SessionDep, principal: CurrentPrincipal
) -> dict[str, Any]:
    await service.delete_tag(session, principal, body.id, body.key)
    return {}


@runs.post("/log-batch")
async def log_batch(
    body: schemas.LogBatch, session: SessionDep, principal: CurrentPrincipal
) -> dict[str, Any]:
    await service.log_batch(
        session, principal, body.id, metrics=body.metrics, params=body.params, tags=body.tags
    )
    return {}


@runs.post("/log-model")
async def log_model(
    body: schemas.LogModel, session: SessionDep, principal: CurrentPrincipal
) -> dict[str, Any]:
    await service.log_model(session, principal, body.id, body.model_json)
    return {}


@runs.post("/log-inputs")
async def log_inputs(
    body: schemas.LogInputs, session: SessionDep, principal: CurrentPrincipal
) -> dict[str, Any]:
    await service.log_inputs(
        session, principal, body.id, datasets=body.datasets, models=body.models
    )
    return {}


@runs.post("/outputs")
async def log_outputs(
    body: schemas.LogOutputs, session: SessionDep, principal: CurrentPrincipal
) -> dict[str, Any]:
    await service.log_outputs(session, principal, body.id, body.models)
    return {}


@metrics.get("/get-history")
async def get_metric_history(
    session: SessionDep,
    principal: CurrentPrincipal,
    metric_key: str | None = None,
    run_id: str | None = None,
    run_uuid: str | None = None,
    max_results: int | None = None,
    page_token: str | None = None,
) -> dict[str, Any]:
    """Every value (one per step), by step; paged only when ``max_results`` is given."""
    if not metric_key:
        raise invalid("Missing value for required parameter 'metric_key'.")
    if max_results is not None and max_results <= 0:
        raise invalid(
            f"Invalid value {max_results} for parameter 'max_results' supplied. "
            "It must be a positive integer."
        )
    run = await service.visible_run(session, principal, run_id or run_uuid)
    points, token = await metric_store.history(
        session, run.id, metric_key, max_results=max_results, page_token=page_token or None
    )
    return {
        "metrics": [metric_json(p) for p in points],
        **({"next_page_token": token} if token else {}),
    }


@metrics.get("/get-history-bulk-interval")
async def get_metric_history_bulk_interval(
    session: SessionDep,
    principal: CurrentPrincipal,
    run_ids: Annotated[list[str] | None, Query()] = None,
    metric_key: str | None = None,
    start_step: int | None = None,
    end_step: int | None = None,
    max_results: int | None = None,
) -> dict[str, Any]:
    """MLflow's sampling per run (see ``metrics.sampled_history``)."""
    if not run_ids:
        raise invalid("Missing value for required parameter 'run_ids'.")
    if len(run_ids) > MAX_RUNS_BULK:
        raise invalid(
            f"GetMetricHistoryBulkInterval request must specify at most {MAX_RUNS_BULK} "
            f"run_ids. Received {len(run_ids)} run_ids."
        )
    if not metric_key:
        raise invalid("Missing value for required parameter 'metric_key'.")
    limit = MAX_RESULTS_PER_RUN if max_results is None else max_results
    if not 1 <= limit <= MAX_RESULTS_PER_RUN:
        raise invalid(f"max_results must be between 1 and {MAX_RESULTS_PER_RUN}.")
    if (start_step is None) != (end_step is None):
        raise invalid("If either start step or end step are specified, both must be specified.")
    if start_step is not None and end_step is not None and start_step > end_step:
        raise invalid(
            "end_step must be greater than start_step. "
            f"Found start_step={start_step} and end_step={end_step}."
        )
    found = [await service.visible_run(session, principal, run_id) for run_id in run_ids]
    points: list[dict[str, Any]] = []
    for run in found:
        sampled = await metric_store.sampled_history(
            session,
            run.id,
            metric_key,
            max_results=limit,
            start_step=start_step,
            end_step=end_step,
        )
        points.extend({**metric_json(p), "run_id": run.id.hex} for p in sampled)
    return {"metrics": points}


@metrics.get("/get-history-bulk")
async def get_metric_history_bulk(
    session: SessionDep,
    principal: CurrentPrincipal,
    run_id: Annotated[list[str] | None, Query()] = None,
    metric_key: str | None = None,
    max_results: int | None = None,
) -> dict[str, Any]:
    """The MLflow UI's (ajax) read of one metric's history over several runs: at most
    ``max_results`` values in all (MLflow's cap, 25,000, when it is not given or larger)."""
    if not run_id:
        raise invalid("GetMetricHistoryBulk request must specify at least one run_id.")
    if len(run_id) > MAX_RUNS_BULK:
        raise invalid(
            f"GetMetricHistoryBulk request cannot specify more than {MAX_RUNS_BULK} run_ids. "
            f"Received {len(run_id)} run_ids."
        )
    if not metric_key:
        raise invalid("GetMetricHistoryBulk request must specify a metric_key.")
    points: list[tuple[str, LatestMetric]] = []
    for value in run_id:
        run = await service.visible_run(session, principal, value)
        history, _ = await metric_store.history(
            session, run.id, metric_key, max_results=None, page_token=None
        )
        points.extend((run.id.hex, p) for p in history)
    points.sort(key=lambda item: (item[0], item[1].timestamp, item[1].step))
    limit = (
        MAX_HISTORY_BULK_RESULTS
        if max_results is None
        else max(0, min(max_results, MAX_HISTORY_BULK_RESULTS))
    )
    return {"metrics": [{**metric_json(p), "run_id": run_hex} for run_hex, p in points[:limit]]}


_merged = APIRouter()
_merged.include_router(runs)
_merged.include_router(metrics)
router, ajax_router = both_prefixes(_merged, "mlflow")
