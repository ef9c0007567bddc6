"""Request and response bodies of alert rules, their backtest and the alerts they fired.

A rule is ``condition`` (what to watch: one of six kinds, each with its own fields) over
``scope`` (which experiments). Metric names are not checked against any experiment: a metric
may appear later. Bad operators, numbers, kinds or scopes are a 422 naming the field
(``["body", "condition", "divergence", "percent"]``).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from runyard.experiments.schemas import Finite, Input, Key, Name

Operator = Literal[">", ">=", "<", "<="]
Severity = Literal["info", "warning", "critical"]
#: a day at most between two alerts of one rule and experiment
MAX_COOLDOWN_S = 7 * 24 * 3600
MAX_EPOCHS = 100_000


class Threshold(Input):
    """``metric`` crosses ``op`` ``value`` (``val_accuracy >= 0.95``)."""

    kind: Literal["threshold"]
    metric: Key
    op: Operator
    value: Finite


class NotFinite(Input):
    """``metric`` becomes NaN or an infinity (logged through MLflow's API: Runyard's own API
    refuses non-finite values)."""

    kind: Literal["not_finite"]
    metric: Key


class Plateau(Input):
    """``metric`` has not improved by more than ``min_delta`` for ``epochs`` epochs having it,
    in ``mode`` (null: the experiment's ``best_mode``): the early-stopping signal."""

    kind: Literal["plateau"]
    metric: Key
    epochs: int = Field(ge=1, le=MAX_EPOCHS)
    min_delta: Finite = Field(default=0.0, ge=0)
    mode: Literal["min", "max"] | None = None


class Divergence(Input):
    """``metric`` rose by more than ``percent`` % over the last ``epochs`` epochs having it
    (its value now against its value ``epochs`` epochs before)."""

    kind: Literal["divergence"]
    metric: Key
    epochs: int = Field(ge=1, le=MAX_EPOCHS)
    percent: Finite = Field(gt=0)


class Gap(Input):
    """Overfitting: ``val_metric - train_metric`` (``direction`` ``train_minus_val``: the
    reverse, for accuracies) exceeds ``gap``."""

    kind: Literal["gap"]
    val_metric: Key = "val_loss"
    train_metric: Key = "train_loss"
    direction: Literal["val_minus_train", "train_minus_val"] = "val_minus_train"
    gap: Finite = Field(ge=0)


class Lifecycle(Input):
    """The experiment ``failed``, ``stalled``, or ``completed`` (optionally only with its final
    ``metric`` ``op`` ``value``, for example ``val_accuracy < 0.9``)."""

    kind: Literal["lifecycle"]
    event: Literal["failed", "stalled", "completed"]
    metric: Key | None = None
    op: Operator | None = None
    value: Finite | None = None

    @model_validator(mode="after")
    def _final_metric(self) -> Lifecycle:
        given = [self.metric is not None, self.op is not None, self.value is not None]
        if any(given) and self.event != "completed":
            raise ValueError("metric, op and value apply to event 'completed' only")
        if any(given) and not all(given):
            raise ValueError("metric, op and value go together")
        return self


Condition = Annotated[
    Threshold | NotFinite | Plateau | Divergence | Gap | Lifecycle, Field(discriminator="kind")
]


class AllExperiments(Input):
    type: Literal["all"]


class ProjectScope(Input):
    type: Literal["project"]
    project_id: uuid.UUID


class FilterScope(Input):
    """Experiments matching a filter-language expression (as ``GET /experiments?filter=``),
    tested against the experiment when its epochs arrive."""

    type: Literal["filter"]
    filter: str = Field(min_length=1, max_length=2000)


class ExperimentScope(Input):
    type: Literal["experiment"]
    experiment_id: uuid.UUID


Scope = Annotated[
    AllExperiments | ProjectScope | FilterScope | ExperimentScope, Field(discriminator="type")
]


class AlertRuleCreate(Input):
    name: Name
    condition: Condition
    scope: Scope = Field(default_factory=lambda: AllExperiments(type="all"))
    severity: Severity = "warning"
    #: no second alert of the rule for one experiment within this many seconds of the last
    cooldown_s: int = Field(default=0, ge=0, le=MAX_COOLDOWN_S)
    #: False: at most one alert per experiment; True: again after the condition cleared (and
    #: ``alert.resolved`` when it clears)
    rearm: bool = False
    enabled: bool = True


class AlertRuleUpdate(Input):
    """The fields to change; a new ``condition`` or ``scope`` starts the rule's evaluation of
    every experiment afresh."""

    name: Name | None = None
    condition: Condition | None = None
    scope: Scope | None = None
    severity: Severity | None = None
    cooldown_s: int | None = Field(default=None, ge=0, le=MAX_COOLDOWN_S)
    rearm: bool | None = None
    enabled: bool | None = None


class AlertRuleOut(BaseModel):
    id: uuid.UUID
    owner_id: uuid.UUID
    name: str
    condition: dict[str, Any]
    scope: dict[str, Any]
    severity: str
    cooldown_s: int
    rearm: bool
    enabled: bool
    version: int
    created_at: datetime
    updated_at: datetime


class BacktestRequest(Input):
    #: only these experiments (still within the rule's scope); default: every matching one
    experiment_ids: list[uuid.UUID] | None = Field(default=None, max_length=1000)
    #: the newest matching experiments evaluated at most
    max_experiments: int = Field(default=100, ge=1, le=1000)


class BacktestFiring(BaseModel):
    experiment_id: uuid.UUID
    experiment_name: str
    status: Literal["triggered", "resolved"]
    epoch: int | None
    values: dict[str, Any]
    summary: str
    #: when the epoch was logged (or the lifecycle event happened)
    at: datetime


class BacktestResult(BaseModel):
    rule_id: uuid.UUID
    experiments_evaluated: int
    epochs_evaluated: int
    firings: list[BacktestFiring]


class AlertOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    rule_id: uuid.UUID
    rule_name: str
    kind: str
    severity: str
    status: Literal["triggered", "resolved"]
    experiment_id: uuid.UUID
    experiment_name: str
    owner_id: uuid.UUID
    epoch: int | None
    values: dict[str, Any]
    summary: str
    created_at: datetime
