"""Request and response bodies. Inputs forbid unknown fields and non-finite numbers."""

from __future__ import annotations

import math
import uuid
from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

MAX_SIGNALS_PER_REQUEST = 10_000
MAX_RUNS_PER_REQUEST = 1_000
MAX_JSON_KEYS = 200
#: the largest epoch number a run may carry (its columns are 32-bit integers)
MAX_EPOCH = 10_000_000


def _finite_json(value: Any, depth: int = 0) -> Any:
    """JSON documents (config, hyperparameters ...) may not hold NaN or infinities."""
    if depth > 32:
        raise ValueError("nested too deeply (more than 32 levels)")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("NaN and infinite numbers are not allowed")
    if isinstance(value, dict):
        for item in value.values():
            _finite_json(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _finite_json(item, depth + 1)
    return value


def _bounded_keys(value: dict[str, Any]) -> dict[str, Any]:
    if len(value) > MAX_JSON_KEYS:
        raise ValueError(f"at most {MAX_JSON_KEYS} keys")
    return value


#: a metric or parameter name: usable in filters as metrics.<key> (backticks quote odd ones)
Key = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[^`\n]+$")]
Finite = Annotated[float, Field(allow_inf_nan=False)]
JsonObject = Annotated[dict[Key, Any], AfterValidator(_finite_json), AfterValidator(_bounded_keys)]
Metrics = Annotated[dict[Key, Finite], AfterValidator(_bounded_keys)]
Path = Annotated[str, StringConstraints(min_length=1, max_length=1024)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255)]
Label = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Color = Annotated[str, StringConstraints(pattern=r"^#[0-9a-fA-F]{6}$")]
BestMode = Literal["min", "max"]


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None


# --- datasets and signals ----------------------------------------------------------------------


class DatasetCreate(Input):
    name: Name
    description: str | None = Field(default=None, max_length=10_000)
    fault_types: list[Label] = Field(default_factory=list, max_length=200)
    severity_levels: list[Label] = Field(default_factory=list, max_length=200)
    file_path: Path | None = None
    meta_data: JsonObject = Field(default_factory=dict)


class DatasetUpdate(Input):
    name: Name | None = None
    description: str | None = Field(default=None, max_length=10_000)
    fault_types: list[Label] | None = Field(default=None, max_length=200)
    severity_levels: list[Label] | None = Field(default=None, max_length=200)
    file_path: Path | None = None
    meta_data: JsonObject | None = None


class DatasetOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    owner_id: uuid.UUID
    name: str
    description: str | None
    num_signals: int
    fault_types: list[str]
    severity_levels: list[str]
    file_path: str | None
    meta_data: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class SignalIn(Input):
    signal_id: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    fault_class: Label | None = None
    severity: Annotated[str, StringConstraints(min_length=1, max_length=50)] | None = None
    file_path: Path | None = None
    rms: Finite | None = Field(default=None, ge=0)
    kurtosis: Finite | None = None
    dominant_frequency: Finite | None = Field(default=None, ge=0)


class SignalBatch(Input):
    signals: list[SignalIn] = Field(min_length=1, max_length=MAX_SIGNALS_PER_REQUEST)


class SignalBatchResult(BaseModel):
    dataset_id: uuid.UUID
    received: int
    inserted: int
    #: signal ids the dataset already had (a retried request inserts nothing twice)
    skipped: int
    num_signals: int


class SignalOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    dataset_id: uuid.UUID
    signal_id: str
    fault_class: str | None
    severity: str | None
    file_path: str | None
    rms: float | None
    kurtosis: float | None
    dominant_frequency: float | None
    created_at: datetime


# --- experiments -------------------------------------------------------------------------------


class ExperimentCreate(Input):
    name: Name
    description: str | None = Field(default=None, max_length=10_000)
    notes: str | None = Field(default=None, max_length=100_000)
    model_type: Annotated[str, StringConstraints(strip_whitespace=True, max_length=100)] | None = (
        None
    )
    dataset_id: uuid.UUID | None = None
    config: JsonObject = Field(default_factory=dict)
    hyperparameters: JsonObject = Field(default_factory=dict)
    model_path: Path | None = None
    onnx_path: Path | None = None
    results_dir: Path | None = None
    #: the metric that picks the best epoch, and whether lower or higher is better
    best_metric: Key = "val_loss"
    best_mode: BestMode | None = None
    tags: list[Label] = Field(default_factory=list, max_length=50)


class ExperimentUpdate(Input):
    name: Name | None = None
    description: str | None = Field(default=None, max_length=10_000)
    notes: str | None = Field(default=None, max_length=100_000)
    model_type: Annotated[str, StringConstraints(strip_whitespace=True, max_length=100)] | None = (
        None
    )
    dataset_id: uuid.UUID | None = None
    config: JsonObject | None = None
    hyperparameters: JsonObject | None = None
    model_path: Path | None = None
    onnx_path: Path | None = None
    results_dir: Path | None = None
    best_metric: Key | None = None
    best_mode: BestMode | None = None


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
    color: Color = "#6b7280"


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
