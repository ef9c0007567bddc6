"""The prediction log of a model version: ``/api/v1/models/{name}/versions/{version}/
predictions``. The model is the caller's (``owner_id``: an admin's or viewer's read of another
owner's model)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request
from pydantic import TypeAdapter

from runyard.experiments.deps import SettingsDep
from runyard.experiments.errors import ValidationFailed
from runyard.experiments.predictions import service
from runyard.experiments.predictions.schemas import (
    PredictionBatchIn,
    PredictionIn,
    PredictionOut,
    PredictionSeries,
    PredictionsLogged,
    PredictionStats,
)
from runyard.shared.db import utcnow
from runyard.shared.identity import CurrentPrincipal
from runyard.shared.pagination import DEFAULT_LIMIT, CursorParam, Limit, Page
from runyard.shared.runtime import SessionDep

router = APIRouter(prefix="/api/v1/models/{name}/versions/{version}/predictions", tags=["models"])

Name = Annotated[str, Path(max_length=255, description="the registered model's name (or its id)")]
Number = Annotated[int, Path(ge=1, le=2**31 - 1, description="the version's number")]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description="a client-made id of the batch (printable ASCII, up to 255): a repeat "
        "stores nothing and answers like the first",
    ),
]
OwnerId = Annotated[
    uuid.UUID | None, Query(description="admins and viewers: the model of this owner")
]


def _body_schema() -> dict[str, Any]:
    """The body as the OpenAPI document shows it (the endpoint parses the raw bytes itself)."""
    one = TypeAdapter(PredictionIn).json_schema()
    batch = TypeAdapter(PredictionBatchIn).json_schema()
    batch.pop("$defs", None)
    batch["properties"]["predictions"]["items"] = one
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"anyOf": [one, batch]}}},
        }
    }


@router.post(
    "",
    status_code=201,
    response_model=PredictionsLogged,
    openapi_extra=_body_schema(),
    responses={
        404: {"description": "no such model version of the caller"},
        409: {"description": "the version is archived"},
        422: {
            "description": "a prediction is invalid: `errors[0].loc` names its index in the "
            "batch and the field (for an input refused by the version's `input_schema`, the "
            "JSON path in it); or the `Idempotency-Key` was used for another version or body "
            '(`loc`: `["header", "Idempotency-Key"]`); nothing is stored'
        },
    },
)
async def log_predictions(
    name: Name,
    version: Number,
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
) -> PredictionsLogged:
    """One prediction, or a batch of up to 10,000 (`{"predictions": [...]}`): all stored or
    none. `time` defaults to now; times before the first kept month
    (`EXPERIMENTS_PREDICTIONS_RETENTION_MONTHS`) or more than
    `EXPERIMENTS_PREDICTIONS_MAX_FUTURE_S` ahead are refused (422). A prediction with `error`
    set counts as an error in the stats.

    With an `Idempotency-Key`, exactly once: a repeat of a key stored before (a retry whose
    first answer was lost, or a concurrent duplicate) stores nothing and answers like the first
    one, with `replayed: true`; the key used for another version or another body is refused
    (422 naming the header). Keys are kept as long as the months of predictions are."""
    ref = await service.find_version(
        session, principal=principal, name=name, number=version, write=True
    )
    body = await request.body()
    logged = await service.log_predictions(
        session, ref=ref, body=body, settings=settings, now=utcnow(), key=idempotency_key
    )
    return PredictionsLogged(
        model=name,
        version=version,
        version_id=ref.version_id,
        count=logged.count,
        replayed=logged.replayed,
    )


def _window(
    since: datetime | None, until: datetime | None, *, default: timedelta | None
) -> tuple[datetime | None, datetime | None]:
    for label, moment in (("from", since), ("to", until)):
        if moment is not None and moment.tzinfo is None:
            raise ValidationFailed(
                f"{label} needs a time zone.", loc=["query", label], msg="needs a time zone"
            )
    if default is not None:
        until = until or utcnow()
        since = since or until - default
    if since is not None and until is not None and since >= until:
        raise ValidationFailed(
            "from must be before to.", loc=["query", "from"], msg="not before to"
        )
    return since, until


@router.get("", response_model=Page[PredictionOut])
async def list_predictions(
    name: Name,
    version: Number,
    session: SessionDep,
    principal: CurrentPrincipal,
    since: Annotated[datetime | None, Query(alias="from", description="from this time")] = None,
    until: Annotated[datetime | None, Query(alias="to", description="before this time")] = None,
    owner_id: OwnerId = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: CursorParam = None,
) -> Page[PredictionOut]:
    """Newest first (by time, then id)."""
    since, until = _window(since, until, default=None)
    ref = await service.find_version(
        session, principal=principal, name=name, number=version, owner_id=owner_id
    )
    rows, next_cursor = await service.list_predictions(
        session, ref=ref, limit=limit, cursor=cursor, since=since, until=until
    )
    return Page[PredictionOut](
        items=[PredictionOut.model_validate(dict(r)) for r in rows], next_cursor=next_cursor
    )


@router.get("/stats", response_model=PredictionStats, response_model_by_alias=True)
async def prediction_stats(
    name: Name,
    version: Number,
    session: SessionDep,
    principal: CurrentPrincipal,
    settings: SettingsDep,
    since: Annotated[
        datetime | None, Query(alias="from", description="window start (default: `to` - 24 h)")
    ] = None,
    until: Annotated[
        datetime | None, Query(alias="to", description="window end (default: now)")
    ] = None,
    owner_id: OwnerId = None,
) -> PredictionStats:
    """Over `[from, to)`: count, errors and error rate, latency p50/p95/p99 and mean, the
    confidence histogram, and its drift (PSI) against the version's first day of predictions."""
    start, end = _window(since, until, default=timedelta(days=1))
    assert start is not None and end is not None
    ref = await service.find_version(
        session, principal=principal, name=name, number=version, owner_id=owner_id
    )
    return await service.stats(session, ref=ref, start=start, end=end, settings=settings)


@router.get("/stats/series", response_model=PredictionSeries, response_model_by_alias=True)
async def prediction_series(
    name: Name,
    version: Number,
    session: SessionDep,
    principal: CurrentPrincipal,
    since: Annotated[
        datetime | None, Query(alias="from", description="window start (default: `to` - 24 h)")
    ] = None,
    until: Annotated[
        datetime | None, Query(alias="to", description="window end (default: now)")
    ] = None,
    interval: Annotated[
        int,
        Query(ge=60, le=31 * 86400, description="seconds per bucket, a multiple of 60"),
    ] = 3600,
    owner_id: OwnerId = None,
) -> PredictionSeries:
    """The window in buckets of `interval` seconds, in one read of the rollups: per bucket the
    count, errors and error rate, and latency p50/p95/p99 (**approximate**: read from the
    rollups' log-spaced histograms, within ~4.5 %) and mean. The window's edges are rounded out
    to whole hours when `interval` is a multiple of an hour, else to whole minutes; at most
    1,000 buckets (422 naming `interval`)."""
    start, end = _window(since, until, default=timedelta(days=1))
    assert start is not None and end is not None
    ref = await service.find_version(
        session, principal=principal, name=name, number=version, owner_id=owner_id
    )
    return await service.stats_series(session, ref=ref, start=start, end=end, interval=interval)
