"""Request and response bodies of experiments, training runs, tags and saved searches."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from runyard.experiments.schemas import (
    MAX_EPOCH,
    Finite,
    Input,
    JsonObject,
    Key,
    Label,
    Metrics,
    Name,
    Path,
)

MAX_RUNS_PER_REQUEST = 1_000
#: the default colour of a tag
DEFAULT_COLOR = "#6b7280"

Color = Annotated[str, StringConstraints(pattern=r"^#[0-9a-fA-F]{6}$")]
BestMode = Literal["min", "max"]
#: seconds without a heartbeat or an epoch after which a running experiment is stalled: from a
#: minute (two of the SDK's default heartbeat periods) to 30 days
MIN_STALE_AFTER_S = 60
MAX_STALE_AFTER_S = 30 * 24 * 3600
StaleAfter = Annotated[int, Field(strict=True, ge=MIN_STALE_AFTER_S, le=MAX_STALE_AFTER_S)]


# --- experiments -------------------------------------------------------------------------------


class ExperimentCreate(Input):
    name: Name
    description: str | None = Field(default=None, max_length=10_000)
    notes: str | None = Field(default=None, max_length=100_000)
    model_type: Annotated[str, StringConstraints(strip_whitespace=True, max_length=100)] | None = (
        None
    )
    dataset_id: uuid.UUID | None = None
    #: the project (its id, or its name): an active project of the experiment's owner
    project: (
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255)]
        | None
    ) = None
    config: JsonObject = Field(default_factory=dict)
    hyperparameters: JsonObject = Field(default_factory=dict)
    model_path: Path | None = None
    onnx_path: Path | None = None
    results_dir: Path | None = None
    #: the metric that picks the best epoch, and whether lower or higher is better
    best_metric: Key = "val_loss"
    best_mode: BestMode | None = None
    tags: list[Label] = Field(default_factory=list, max_length=50)
    #: silence (no heartbeat, no epoch) after which the running experiment is marked stalled,
    #: in seconds; null: the service's default (EXPERIMENTS_STALE_AFTER_S, 10 minutes)
    stale_after_s: StaleAfter | None = None


class ExperimentUpdate(Input):
    name: Name | None = None
    description: str | None = Field(default=None, max_length=10_000)
    notes: str | None = Field(default=None, max_length=100_000)
    model_type: Annotated[str, StringConstraints(strip_whitespace=True, max_length=100)] | None = (
        None
    )
    dataset_id: uuid.UUID | None = None
    #: the project (its id, or its name): an active project of the experiment's owner; null: none
    project: (
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255)]
        | None
    ) = None
    config: JsonObject | None = None
    hyperparameters: JsonObject | None = None
    model_path: Path | None = None
    onnx_path: Path | None = None
    results_dir: Path | None = None
    best_metric: Key | None = None
    best_mode: BestMode | None = None
    #: null: back to the service's default
    stale_after_s: StaleAfter | None = None


class ExperimentComplete(Input):
    final_metrics: Metrics = Field(default_factory=dict)
    best_epoch: int | None = Field(default=None, ge=0, le=MAX_EPOCH)
    total_epochs: int | None = Field(default=None, ge=0, le=MAX_EPOCH)


class ExperimentFail(Input):
    error: str | None = Field(default=None, max_length=10_000)
    final_metrics: Metrics = Field(default_factory=dict)


class ExperimentCancel(Input):
    reason: str | None = Field(default=None, max_length=2_000)


class ExperimentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    description: str | None
    notes: str | None
    owner_id: uuid.UUID
    model_type: str | None
    dataset_id: uuid.UUID | None
    #: the project the experiment belongs to (null: none)
    project_id: uuid.UUID | None
    status: str
    config: dict[str, Any]
    hyperparameters: dict[str, Any]
    metrics: dict[str, Any]
    best_metric: str
    best_mode: str
    best_epoch: int | None
    best_value: float | None
    total_epochs: int
    model_path: str | None
    onnx_path: str | None
    results_dir: str | None
    tags: list[str]
    error_message: str | None
    started_at: datetime | None
    ended_at: datetime | None
    duration_seconds: float | None
    #: the last heartbeat or logged epoch (null: none yet)
    last_seen_at: datetime | None
    #: set while a running experiment is silent for longer than its limit (`experiment.stalled`);
    #: cleared when it reports again (`experiment.resumed`) or leaves `running`
    stalled_at: datetime | None
    #: the experiment's own silence limit in seconds (null: the service's default)
    stale_after_s: int | None
    version: int
    created_at: datetime
    updated_at: datetime


# --- training runs -----------------------------------------------------------------------------


class RunIn(Input):
    epoch: int = Field(ge=0, le=MAX_EPOCH)
    train_loss: Finite | None = None
    val_loss: Finite | None = None
    train_accuracy: Finite | None = None
    val_accuracy: Finite | None = None
    learning_rate: Finite | None = Field(default=None, ge=0)
    duration_seconds: Finite | None = Field(default=None, ge=0)
    checkpoint_path: Path | None = None
    #: any further metrics of the epoch (f1_macro, grad_norm ...)
    metrics: Metrics = Field(default_factory=dict)


class RunBatch(Input):
    runs: list[RunIn] = Field(min_length=1, max_length=MAX_RUNS_PER_REQUEST)


class RunBatchResult(BaseModel):
    experiment_id: uuid.UUID
    received: int
    inserted: int
    #: epochs logged before whose values this request changed
    updated: int
    #: epochs logged before with the same values (a retried request)
    unchanged: int
    status: str
    total_epochs: int
    best_epoch: int | None
    best_value: float | None
    metrics: dict[str, Any]


class RunOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    epoch: int
    train_loss: float | None
    val_loss: float | None
    train_accuracy: float | None
    val_accuracy: float | None
    learning_rate: float | None
    duration_seconds: float | None
    checkpoint_path: str | None
    metrics: dict[str, Any]
    created_at: datetime
    updated_at: datetime


# --- tags --------------------------------------------------------------------------------------

TagName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$", max_length=64)]


class TagCreate(Input):
    name: TagName
    slug: Slug | None = None
    color: Color = DEFAULT_COLOR


class TagUpdate(Input):
    name: TagName | None = None
    slug: Slug | None = None
    color: Color | None = None


class TagOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    owner_id: uuid.UUID
    name: str
    slug: str
    color: str
    usage_count: int
    created_at: datetime
    updated_at: datetime


# --- saved searches ----------------------------------------------------------------------------


class SavedSearchCreate(Input):
    name: Name
    #: a filter expression (the `filter` parameter of GET /experiments); empty: everything
    query: str = Field(default="", max_length=4000)
    #: full-text words (the `q` parameter)
    q: str | None = Field(default=None, max_length=500)
    order_by: str | None = Field(default=None, max_length=200)
    is_pinned: bool = False


class SavedSearchUpdate(Input):
    name: Name | None = None
    query: str | None = Field(default=None, max_length=4000)
    q: str | None = Field(default=None, max_length=500)
    order_by: str | None = Field(default=None, max_length=200)
    is_pinned: bool | None = None


class SavedSearchOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    owner_id: uuid.UUID
    name: str
    query: str
    q: str | None
    order_by: str | None
    is_pinned: bool
    usage_count: int
    last_used_at: datetime | None
    created_at: datetime
    updated_at: datetime


# --- downsampled history -----------------------------------------------------------------------


class HistorySeries(BaseModel):
    """One metric, one value per bucket (``null``: no epoch of the bucket has the metric)."""

    min: list[float | None]
    max: list[float | None]
    #: the value at the bucket's highest epoch that has the metric
    last: list[float | None]


class HistoryOut(BaseModel):
    experiment_id: uuid.UUID
    #: buckets asked for; empty buckets (gaps in the epochs) are left out
    buckets: int
    #: epochs stored in the range
    points: int
    #: the lowest and highest stored epoch in the range (null: none)
    from_epoch: int | None
    to_epoch: int | None
    #: per bucket: its highest epoch
    epoch: list[int]
    #: per bucket: when its last epoch was logged (Unix seconds)
    time: list[float]
    series: dict[str, HistorySeries]
