from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Response

from runyard.experiments.deps import SettingsDep
from runyard.experiments.schemas import MAX_EPOCH, Key
from runyard.experiments.tracking.repository.search import SearchParams
from runyard.experiments.tracking.schemas import (
    ExperimentCancel,
    ExperimentComplete,
    ExperimentCreate,
    ExperimentFail,
    ExperimentOut,
    ExperimentUpdate,
    HistoryOut,
    HistorySeries,
    RunBatch,
    RunBatchResult,
    RunIn,
    RunOut,
)
from runyard.experiments.tracking.service import experiments as service
from runyard.experiments.tracking.service import history, lifecycle, liveness, runs, search
from runyard.shared.identity import CurrentPrincipal
from runyard.shared.pagination import DEFAULT_LIMIT, CursorParam, Limit, Page
from runyard.shared.runtime import SessionDep

router = APIRouter(prefix="/api/v1/experiments", tags=["experiments"])

Status = Literal["pending", "running", "paused", "completed", "failed", "cancelled"]
TagPath = Annotated[str, Path(min_length=1, max_length=64, description="tag slug or name")]
CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"description": "not allowed in the current status (problem+json with `current_status`)"}
}


@router.post("", status_code=201, response_model=ExperimentOut)
async def create_experiment(
    body: ExperimentCreate, session: SessionDep, principal: CurrentPrincipal
) -> ExperimentOut:
    experiment = await service.create_experiment(session, principal=principal, data=body)
    return ExperimentOut.model_validate(experiment)


@router.get("", response_model=Page[ExperimentOut])
async def search_experiments(
    session: SessionDep,
    principal: CurrentPrincipal,
    settings: SettingsDep,
    filter: Annotated[
        str | None,
        Query(
            max_length=4000,
            description="filter expression, e.g. `metrics.val_accuracy > 0.9 and "
            "model_type = 'cnn1d'` (AND, OR, NOT, parentheses; = != < <= > >= IN LIKE ILIKE "
            "IS NULL over status, name, model_type, created_at, dataset_id, project, "
            "metrics.<key>, params.<key>, tag ...)",
        ),
    ] = None,
    q: Annotated[
        str | None,
        Query(max_length=500, description="full text over name, notes, model type, tags"),
    ] = None,
    order_by: Annotated[
        str | None,
        Query(
            max_length=200,
            description="`-created_at` (default), `name`, `metrics.val_loss asc` ...",
        ),
    ] = None,
    status: Status | None = None,
    model_type: Annotated[str | None, Query(max_length=100)] = None,
    dataset_id: uuid.UUID | None = None,
    project_id: Annotated[uuid.UUID | None, Query(description="only this project's")] = None,
    tag: Annotated[str | None, Query(max_length=64)] = None,
    owner_id: Annotated[
        uuid.UUID | None, Query(description="admins and viewers: only this owner's experiments")
    ] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: CursorParam = None,
) -> Page[ExperimentOut]:
    params = SearchParams(
        filter=filter,
        q=q,
        order_by=order_by,
        status=status,
        model_type=model_type,
        dataset_id=dataset_id,
        project_id=project_id,
        tag=tag,
        owner_id=owner_id,
    )
    rows, next_cursor = await search.search_experiments(
        session,
        principal=principal,
        params=params,
        limit=limit,
        cursor=cursor,
        statement_timeout_ms=settings.search_statement_timeout_ms,
    )
    return Page[ExperimentOut](
        items=[ExperimentOut.model_validate(r) for r in rows], next_cursor=next_cursor
    )


@router.get("/{experiment_id}", response_model=ExperimentOut)
async def get_experiment(
    experiment_id: uuid.UUID, session: SessionDep, principal: CurrentPrincipal
) -> ExperimentOut:
    experiment = await service.get_visible_experiment(
        session, principal=principal, experiment_id=experiment_id
    )
    return ExperimentOut.model_validate(experiment)


@router.patch("/{experiment_id}", response_model=ExperimentOut)
async def update_experiment(
    experiment_id: uuid.UUID,
    body: ExperimentUpdate,
    session: SessionDep,
    principal: CurrentPrincipal,
) -> ExperimentOut:
    experiment = await service.update_experiment(
        session, principal=principal, experiment_id=experiment_id, data=body
    )
    return ExperimentOut.model_validate(experiment)


@router.delete("/{experiment_id}", status_code=204)
async def delete_experiment(
    experiment_id: uuid.UUID, session: SessionDep, principal: CurrentPrincipal
) -> Response:
    await service.delete_experiment(session, principal=principal, experiment_id=experiment_id)
    return Response(status_code=204)


# --- lifecycle


@router.post("/{experiment_id}/start", response_model=ExperimentOut, responses=CONFLICT)
async def start_experiment(
    experiment_id: uuid.UUID, session: SessionDep, principal: CurrentPrincipal
) -> ExperimentOut:
    experiment = await lifecycle.start(session, principal=principal, experiment_id=experiment_id)
    return ExperimentOut.model_validate(experiment)


@router.post("/{experiment_id}/pause", response_model=ExperimentOut, responses=CONFLICT)
async def pause_experiment(
    experiment_id: uuid.UUID, session: SessionDep, principal: CurrentPrincipal
) -> ExperimentOut:
    experiment = await lifecycle.pause(session, principal=principal, experiment_id=experiment_id)
    return ExperimentOut.model_validate(experiment)


@router.post("/{experiment_id}/resume", response_model=ExperimentOut, responses=CONFLICT)
async def resume_experiment(
    experiment_id: uuid.UUID, session: SessionDep, principal: CurrentPrincipal
) -> ExperimentOut:
    experiment = await lifecycle.resume(session, principal=principal, experiment_id=experiment_id)
    return ExperimentOut.model_validate(experiment)


@router.post("/{experiment_id}/complete", response_model=ExperimentOut, responses=CONFLICT)
async def complete_experiment(
    experiment_id: uuid.UUID,
    session: SessionDep,
    principal: CurrentPrincipal,
    body: ExperimentComplete | None = None,
) -> ExperimentOut:
    experiment = await lifecycle.complete(
        session, principal=principal, experiment_id=experiment_id, body=body or ExperimentComplete()
    )
    return ExperimentOut.model_validate(experiment)


@router.post("/{experiment_id}/fail", response_model=ExperimentOut, responses=CONFLICT)
async def fail_experiment(
    experiment_id: uuid.UUID,
    session: SessionDep,
    principal: CurrentPrincipal,
    body: ExperimentFail | None = None,
) -> ExperimentOut:
    experiment = await lifecycle.fail(
        session, principal=principal, experiment_id=experiment_id, body=body or ExperimentFail()
    )
    return ExperimentOut.model_validate(experiment)


@router.post("/{experiment_id}/cancel", response_model=ExperimentOut, responses=CONFLICT)
async def cancel_experiment(
    experiment_id: uuid.UUID,
    session: SessionDep,
    principal: CurrentPrincipal,
    body: ExperimentCancel | None = None,
) -> ExperimentOut:
    experiment = await lifecycle.cancel(
        session, principal=principal, experiment_id=experiment_id, body=body or ExperimentCancel()
    )
    return ExperimentOut.model_validate(experiment)


@router.post("/{experiment_id}/heartbeat", status_code=204)
async def heartbeat(
    experiment_id: uuid.UUID, session: SessionDep, principal: CurrentPrincipal
) -> Response:
    """The training process is alive (no body; the SDK sends one every 30 s while a run is open).
    A running experiment without a heartbeat or an epoch for its `stale_after_s` is marked
    stalled (`stalled_at`, `experiment.stalled`); the next heartbeat or epoch clears it
    (`experiment.resumed`). A finished experiment: 204, nothing changes."""
    await liveness.heartbeat(session, principal=principal, experiment_id=experiment_id)
    return Response(status_code=204)


# --- training runs


@router.post(
    "/{experiment_id}/runs",
    response_model=RunBatchResult,
    status_code=201,
    responses={200: {"description": "nothing new: every epoch was logged before"}, **CONFLICT},
)
async def log_runs(
    experiment_id: uuid.UUID,
    body: RunIn | RunBatch,
    session: SessionDep,
    principal: CurrentPrincipal,
    response: Response,
) -> RunBatchResult:
    """One epoch (`{"epoch": 3, "val_loss": ...}`) or a batch (`{"runs": [...]}`, up to 1,000).

    Idempotent per epoch: sending an epoch again with the same values changes nothing, with
    other values replaces them. 201 when at least one epoch is new, else 200.
    """
    items = body.runs if isinstance(body, RunBatch) else [body]
    result = await runs.log_runs(
        session, principal=principal, experiment_id=experiment_id, runs=items
    )
    if result.inserted == 0:
        response.status_code = 200
    return result


@router.get("/{experiment_id}/runs", response_model=Page[RunOut])
async def list_runs(
    experiment_id: uuid.UUID,
    session: SessionDep,
    principal: CurrentPrincipal,
    limit: Limit = DEFAULT_LIMIT,
    cursor: CursorParam = None,
) -> Page[RunOut]:
    rows, next_cursor = await runs.list_runs(
        session, principal=principal, experiment_id=experiment_id, limit=limit, cursor=cursor
    )
    return Page[RunOut](items=[RunOut.model_validate(r) for r in rows], next_cursor=next_cursor)


@router.get("/{experiment_id}/history", response_model=HistoryOut)
async def read_history(
    experiment_id: uuid.UUID,
    session: SessionDep,
    principal: CurrentPrincipal,
    buckets: Annotated[int, Query(ge=1, le=10_000, description="buckets to cut the range into")] = (
        1000
    ),
    metric: Annotated[
        list[Key] | None,
        Query(
            max_length=history.MAX_METRICS,
            description="metrics to return (repeat the parameter); default: the numeric "
            "metrics of the latest epoch",
        ),
    ] = None,
    from_epoch: Annotated[int | None, Query(ge=0, le=MAX_EPOCH)] = None,
    to_epoch: Annotated[int | None, Query(ge=0, le=MAX_EPOCH)] = None,
) -> Response:
    """The training history downsampled for charts: the epochs in `[from_epoch, to_epoch]` cut
    into `buckets` equal ranges, and per bucket and metric the min, the max and the last value
    (so spikes survive). Zoom in by asking for a narrower range."""
    found = await history.read_history(
        session,
        principal=principal,
        experiment_id=experiment_id,
        metrics=metric,
        buckets=buckets,
        from_epoch=from_epoch,
        to_epoch=to_epoch,
    )
    # built from our own values: serialised as it is, not validated again (12,000 numbers at
    # 1,000 buckets and 4 metrics)
    body = HistoryOut.model_construct(
        experiment_id=experiment_id,
        buckets=buckets,
        points=found.points,
        from_epoch=found.from_epoch,
        to_epoch=found.to_epoch,
        epoch=found.epoch,
        time=found.time,
        series={
            name: HistorySeries.model_construct(min=s.min, max=s.max, last=s.last)
            for name, s in found.series.items()
        },
    )
    return Response(body.model_dump_json(), media_type="application/json")


# --- tags on an experiment


@router.put("/{experiment_id}/tags/{tag}", response_model=ExperimentOut)
async def tag_experiment(
    experiment_id: uuid.UUID, tag: TagPath, session: SessionDep, principal: CurrentPrincipal
) -> ExperimentOut:
    """Tag the experiment (idempotent). A tag the owner does not have yet is created."""
    experiment = await service.tag_experiment(
        session, principal=principal, experiment_id=experiment_id, tag=tag
    )
    return ExperimentOut.model_validate(experiment)


@router.delete("/{experiment_id}/tags/{tag}", status_code=204)
async def untag_experiment(
    experiment_id: uuid.UUID, tag: TagPath, session: SessionDep, principal: CurrentPrincipal
) -> Response:
    """Remove the tag from the experiment (idempotent: 204 also when it was not there)."""
    await service.untag_experiment(
        session, principal=principal, experiment_id=experiment_id, tag=tag
    )
    return Response(status_code=204)
