"""Request and response bodies of HPO and NAS campaigns."""

from __future__ import annotations

import math
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from runyard.experiments.schemas import (
    MAX_EPOCH,
    Finite,
    Input,
    JsonObject,
    Key,
    Label,
    Metrics,
    Name,
)
from runyard.experiments.tracking.schemas import ExperimentOut

MAX_PARAMS = 50
MAX_GRID_POINTS = 100_000
MAX_TRIALS = 10_000

HpoMethod = Literal["grid", "random", "bayesian", "hyperband"]
Direction = Literal["maximize", "minimize"]
PrunerName = Literal["none", "median", "hyperband"]


class IntParam(Input):
    type: Literal["int"]
    low: int
    high: int
    step: int = Field(default=1, ge=1)
    log: bool = False

    @model_validator(mode="after")
    def _check(self) -> IntParam:
        if self.low > self.high:
            raise ValueError("low must not be greater than high")
        if self.log and (self.low < 1 or self.step != 1):
            raise ValueError("a log-scale int needs low >= 1 and step 1")
        return self


class FloatParam(Input):
    type: Literal["float"]
    low: Finite
    high: Finite
    #: a grid search enumerates low, low + step, ... high
    step: Finite | None = Field(default=None, gt=0)
    log: bool = False

    @model_validator(mode="after")
    def _check(self) -> FloatParam:
        if self.low > self.high:
            raise ValueError("low must not be greater than high")
        if self.log and (self.low <= 0 or self.step is not None):
            raise ValueError("a log-scale float needs low > 0 and no step")
        return self


Choice = str | int | float | bool | None


class CategoricalParam(Input):
    type: Literal["categorical"]
    choices: list[Choice] = Field(min_length=1, max_length=1000)

    @model_validator(mode="after")
    def _check(self) -> CategoricalParam:
        if any(isinstance(c, float) and not math.isfinite(c) for c in self.choices):
            raise ValueError("choices may not hold NaN or infinities")
        if len({repr(c) for c in self.choices}) != len(self.choices):
            raise ValueError("choices must be distinct")
        return self


Param = Annotated[IntParam | FloatParam | CategoricalParam, Field(discriminator="type")]


class HpoBudget(Input):
    max_trials: int = Field(ge=1, le=MAX_TRIALS)
    #: no suggestion after this many seconds from the first one; the campaign completes when
    #: its running trials have finished
    max_duration_seconds: Finite | None = Field(default=None, gt=0)
    #: pruning: epochs every trial runs before it may be pruned (hyperband: min resource)
    min_epochs: int = Field(default=1, ge=1, le=MAX_EPOCH)
    #: hyperband: the most epochs a trial runs (its max resource); default: learnt from the
    #: first completed trial
    max_epochs: int | None = Field(default=None, ge=1, le=MAX_EPOCH)


class HpoCampaignCreate(Input):
    name: Name
    description: str | None = Field(default=None, max_length=10_000)
    method: HpoMethod
    search_space: dict[Key, Param] = Field(min_length=1, max_length=MAX_PARAMS)
    budget: HpoBudget
    #: the metric of the trial experiments to optimise (a key of their final metrics)
    metric: Key = "val_accuracy"
    #: default: maximize for accuracy-like names (acc, f1, auc ...), minimize otherwise
    direction: Direction | None = None
    #: default: hyperband for the hyperband method, none otherwise
    pruner: PrunerName | None = None
    base_model_type: Label | None = None
    dataset_id: uuid.UUID | None = None
    #: fixed hyperparameters every trial gets besides the suggested ones
    base_hyperparameters: JsonObject = Field(default_factory=dict)
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1)


class HpoCampaignOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    owner_id: uuid.UUID
    name: str
    description: str | None
    method: str
    status: str
    base_model_type: str | None
    dataset_id: uuid.UUID | None
    search_space: dict[str, Any]
    budget: dict[str, Any]
    base_hyperparameters: dict[str, Any]
    metric: str
    direction: str
    pruner: str
    seed: int
    trials_started: int
    trials_completed: int
    trials_total: int
    best_experiment_id: uuid.UUID | None
    best_value: float | None
    best_accuracy: float | None
    best_params: dict[str, Any] | None
    completion_reason: str | None
    started_at: datetime | None
    ended_at: datetime | None
    created_at: datetime
    updated_at: datetime


class HpoTrialOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    number: int
    experiment_id: uuid.UUID
    params: dict[str, Any]
    #: running | complete | pruned | fail
    state: str
    value: float | None
    pruned_at_step: int | None
    finished_at: datetime | None
    created_at: datetime


class Suggestion(BaseModel):
    campaign: HpoCampaignOut
    trial_number: int
    params: dict[str, Any]
    #: the pending experiment to train with these hyperparameters
    experiment: ExperimentOut


class PruneAnswer(BaseModel):
    experiment_id: uuid.UUID
    should_prune: bool
    #: null when the experiment is not a trial of an HPO campaign (never pruned)
    hpo_campaign_id: uuid.UUID | None
    trial_number: int | None
    #: the last epoch whose value of the campaign metric the pruner saw
    step: int | None


# --- NAS -----------------------------------------------------------------------------------------


class NasCampaignCreate(Input):
    name: Name
    description: str | None = Field(default=None, max_length=10_000)
    dataset_id: uuid.UUID | None = None
    #: random | evolution | reinforcement | darts | bayesian ... (free text, as the tool names it)
    search_algorithm: Label
    num_trials: int = Field(ge=1, le=MAX_TRIALS)
    max_epochs_per_trial: int | None = Field(default=None, ge=1, le=MAX_EPOCH)
    search_space_config: JsonObject = Field(default_factory=dict)


class NasCampaignOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    owner_id: uuid.UUID
    name: str
    description: str | None
    dataset_id: uuid.UUID | None
    search_algorithm: str
    num_trials: int
    max_epochs_per_trial: int | None
    search_space_config: dict[str, Any]
    status: str
    trials_completed: int
    best_trial_id: uuid.UUID | None
    best_accuracy: float | None
    ended_at: datetime | None
    created_at: datetime
    updated_at: datetime


class NasTrialCreate(Input):
    architecture: JsonObject = Field(min_length=1)
    validation_accuracy: Finite | None = Field(default=None, ge=0, le=1)
    validation_loss: Finite | None = Field(default=None, ge=0)
    training_time: Finite | None = Field(default=None, ge=0)
    num_parameters: int | None = Field(default=None, ge=0, le=2**62)
    flops: int | None = Field(default=None, ge=0, le=2**62)
    model_size_mb: Finite | None = Field(default=None, ge=0)
    metrics: Metrics = Field(default_factory=dict)


class NasTrialOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    campaign_id: uuid.UUID
    trial_number: int
    architecture: dict[str, Any]
    architecture_hash: str
    validation_accuracy: float | None
    validation_loss: float | None
    training_time: float | None
    num_parameters: int | None
    flops: int | None
    model_size_mb: float | None
    metrics: dict[str, Any]
    created_at: datetime
