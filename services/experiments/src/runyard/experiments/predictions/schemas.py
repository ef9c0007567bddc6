"""Request and response models of the prediction log."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, NotRequired

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, with_config
from typing_extensions import TypedDict

#: predictions one request may log
MAX_BATCH = 10_000
MAX_ERROR_LENGTH = 10_000


@with_config(ConfigDict(extra="forbid"))
class PredictionIn(TypedDict):
    """One logged prediction (a TypedDict: pydantic validates it from the request's bytes
    without making a model object per row)."""

    #: what the model was given (checked against the version's ``input_schema`` if it has one)
    input: Any
    output: NotRequired[Any]
    confidence: NotRequired[Annotated[float | None, Field(ge=0, le=1, allow_inf_nan=False)]]
    latency_ms: Annotated[float, Field(ge=0, allow_inf_nan=False)]
    #: when the prediction was made (default: when the request arrives); with a time zone
    time: NotRequired[AwareDatetime | None]
    #: set when the prediction failed (its message): what the error rate counts
    error: NotRequired[Annotated[str | None, Field(max_length=MAX_ERROR_LENGTH)]]


@with_config(ConfigDict(extra="forbid"))
class PredictionBatchIn(TypedDict):
    predictions: Annotated[list[PredictionIn], Field(min_length=1, max_length=MAX_BATCH)]


#: a body is one prediction or a batch (told apart by its ``predictions`` key)
ONE = TypeAdapter(PredictionIn)
BATCH = TypeAdapter(PredictionBatchIn)


class PredictionsLogged(BaseModel):
    model: str
    version: int
    version_id: uuid.UUID
    #: predictions stored (by this request, or by the first one with its ``Idempotency-Key``)
    count: int
    #: true: the ``Idempotency-Key`` was stored before; this request stored nothing
    replayed: bool = False


class PredictionOut(BaseModel):
    id: int
    time: datetime
    input: Any
    output: Any
    confidence: float | None
    latency_ms: float
    error: str | None


class LatencyStats(BaseModel):
    p50: float | None
    p95: float | None
    p99: float | None
    mean: float | None
    #: true: ``percentile_cont`` over the rows; false: read from the log-spaced histogram of
    #: the rollups (within ~4.5 %), for windows of more than
    #: ``EXPERIMENTS_PREDICTIONS_EXACT_PERCENTILES_MAX`` predictions
    exact: bool


class Bucket(BaseModel):
    lower: float
    upper: float
    count: int


class ConfidenceStats(BaseModel):
    #: ten buckets ``[0, 0.1) ... [0.9, 1.0]``
    buckets: list[Bucket]
    #: predictions without a confidence
    null_count: int


class DriftStats(BaseModel):
    """The confidence distribution of the window against the version's first day of
    predictions (``[first prediction, +24 h)``)."""

    #: population stability index; null when the window or the first day has no confidence
    psi: float | None
    threshold: float
    drifted: bool
    baseline_from: datetime | None
    baseline_to: datetime | None
    baseline_count: int


class PredictionStats(BaseModel):
    from_: datetime = Field(serialization_alias="from")
    to: datetime
    count: int
    errors: int
    #: errors / count (null without predictions); an error is a prediction logged with ``error``
    error_rate: float | None
    latency_ms: LatencyStats
    confidence: ConfidenceStats
    drift: DriftStats


class SeriesLatency(BaseModel):
    """Read from the log-spaced latency histogram of the rollups (within ~4.5 %)."""

    p50: float | None
    p95: float | None
    p99: float | None
    mean: float | None


class SeriesBucket(BaseModel):
    start: datetime
    end: datetime
    count: int
    errors: int
    #: errors / count (null without predictions)
    error_rate: float | None
    latency_ms: SeriesLatency


class PredictionSeries(BaseModel):
    """Consecutive buckets of ``interval`` seconds from ``from`` to ``to`` (the window's edges
    rounded out to the rollup grain: whole hours when ``interval`` is a multiple of an hour,
    else whole minutes), every bucket listed, empty ones with count 0."""

    from_: datetime = Field(serialization_alias="from")
    to: datetime
    interval: int
    #: seconds of the rollups read: 60 or 3600
    grain: int
    buckets: list[SeriesBucket]
