"""Runyard rows as MLflow's JSON entities (the proto3 JSON the stock client parses).

What is stored where for a run (a Runyard experiment), so that other modules read it alike:

- ``kv_tags``: MLflow tags, ``mlflow.runName`` and ``mlflow.user`` included;
- ``hyperparameters``: params (strings; Runyard-native numbers are rendered as JSON);
- ``inputs``: ``{"dataset": {name, digest, source_type, source, schema?, profile?}, "tags":
  [{key, value}]}`` per dataset input (one per (name, digest)), ``{"model_id": ...}`` per
  model input; ``outputs``: ``{"model_id": ..., "step": n}`` per model output.
"""

from __future__ import annotations

import json
import math
import uuid
from datetime import datetime
from typing import Any, NamedTuple, Protocol

from runyard.experiments.mlflow import ids
from runyard.experiments.models import Project

#: Runyard status -> MLflow run status
RUN_STATUS = {
    "pending": "SCHEDULED",
    "running": "RUNNING",
    "paused": "RUNNING",
    "completed": "FINISHED",
    "failed": "FAILED",
    "cancelled": "KILLED",
}
RUN_NAME_TAG = "mlflow.runName"
USER_TAG = "mlflow.user"


class RunFields(Protocol):
    """What a run's JSON is made of: an ``Experiment``, or a row of ``search.PAGE_COLUMNS``."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def project_id(self) -> uuid.UUID | None: ...
    @property
    def owner_id(self) -> uuid.UUID: ...
    @property
    def name(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def started_at(self) -> datetime | None: ...
    @property
    def ended_at(self) -> datetime | None: ...
    @property
    def updated_at(self) -> datetime: ...
    @property
    def deleted_at(self) -> datetime | None: ...
    @property
    def hyperparameters(self) -> dict[str, Any]: ...
    @property
    def kv_tags(self) -> dict[str, str]: ...
    @property
    def metrics(self) -> dict[str, Any]: ...
    @property
    def inputs(self) -> list[dict[str, Any]]: ...
    @property
    def outputs(self) -> list[dict[str, Any]]: ...


class LatestMetric(NamedTuple):
    """A metric value as MLflow returns it (a tuple: a page of 1,000 runs makes thousands)."""

    key: str
    value: float
    timestamp: int
    step: int


def millis(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp() * 1000)


def key_values(mapping: dict[str, Any]) -> list[dict[str, str]]:
    return [{"key": k, "value": param_text(v)} for k, v in sorted(mapping.items())]


def param_text(value: Any) -> str:
    """MLflow params and tags are strings; a Runyard-native number or object is shown as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def experiment_json(project: Project) -> dict[str, Any]:
    experiment_id = str(project.id)
    return {
        "experiment_id": experiment_id,
        "name": project.name,
        "artifact_location": ids.artifact_location(experiment_id),
        "lifecycle_stage": project.lifecycle_stage,
        "last_update_time": millis(project.updated_at),
        "creation_time": millis(project.created_at),
        "tags": key_values(project.tags),
    }


def default_experiment_json() -> dict[str, Any]:
    """The virtual Default experiment: always active, no tags, no times."""
    return {
        "experiment_id": ids.DEFAULT_EXPERIMENT_ID,
        "name": ids.DEFAULT_EXPERIMENT_NAME,
        "artifact_location": ids.artifact_location(ids.DEFAULT_EXPERIMENT_ID),
        "lifecycle_stage": "active",
        "tags": [],
    }


def run_name(experiment: RunFields) -> str:
    return experiment.kv_tags.get(RUN_NAME_TAG) or experiment.name


def run_info_json(experiment: RunFields, owner_username: str | None) -> dict[str, Any]:
    experiment_id = ids.experiment_id_of(experiment.project_id)
    run_id = ids.run_id_of(experiment.id)
    info = {
        "run_id": run_id,
        "run_uuid": run_id,
        "run_name": run_name(experiment),
        "experiment_id": experiment_id,
        "user_id": experiment.kv_tags.get(USER_TAG) or owner_username or str(experiment.owner_id),
        "status": RUN_STATUS[experiment.status],
        "start_time": millis(experiment.started_at),
        "end_time": millis(experiment.ended_at),
        "artifact_uri": ids.artifact_uri(experiment_id, run_id),
        "lifecycle_stage": "deleted" if experiment.deleted_at is not None else "active",
    }
    return {k: v for k, v in info.items() if v is not None}


def double(value: float) -> float | str:
    """A double in proto3 JSON, as MLflow's client parses it: NaN and infinities as strings."""
    if math.isfinite(value):
        return value
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def metric_json(metric: LatestMetric) -> dict[str, Any]:
    return {
        "key": metric.key,
        "value": double(metric.value),
        "timestamp": metric.timestamp,
        "step": metric.step,
    }


def run_json(
    experiment: RunFields, owner_username: str | None, latest: list[LatestMetric]
) -> dict[str, Any]:
    datasets = [i for i in experiment.inputs if "dataset" in i]
    models = [{"model_id": i["model_id"]} for i in experiment.inputs if "model_id" in i]
    return {
        "info": run_info_json(experiment, owner_username),
        "data": {
            "metrics": [metric_json(m) for m in latest],
            "params": key_values(experiment.hyperparameters),
            "tags": key_values(experiment.kv_tags),
        },
        "inputs": {"dataset_inputs": datasets, "model_inputs": models},
        "outputs": {"model_outputs": list(experiment.outputs)},
    }
