"""What the client scripts share. They run with the MLflow venv's Python (never the workspace's),
take their arguments as one JSON object in ``argv[1]`` and print what they saw as one JSON line,
which the test asserts on. An MLflow error the script expects is caught and reported as
``{"error_code": ..., "message": ...}``; any other error ends the script with its traceback."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

from mlflow.entities import Experiment, Run
from mlflow.exceptions import MlflowException


def arguments() -> dict[str, Any]:
    return json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}


def emit(result: dict[str, Any]) -> None:
    print(json.dumps(result, default=str), flush=True)


def error_of(call: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[str, str] | None:
    """The MLflow error ``call`` raises (None: it succeeded)."""
    try:
        call(*args, **kwargs)
    except MlflowException as exc:
        return {"error_code": str(exc.error_code), "message": str(exc)[:1000]}
    return None


def experiment_dict(experiment: Experiment | None) -> dict[str, Any] | None:
    if experiment is None:
        return None
    return {
        "experiment_id": experiment.experiment_id,
        "name": experiment.name,
        "artifact_location": experiment.artifact_location,
        "lifecycle_stage": experiment.lifecycle_stage,
        "tags": dict(experiment.tags),
        "creation_time": experiment.creation_time,
        "last_update_time": experiment.last_update_time,
    }


def run_dict(run: Run) -> dict[str, Any]:
    info = run.info
    return {
        "run_id": info.run_id,
        "run_name": info.run_name,
        "experiment_id": info.experiment_id,
        "user_id": info.user_id,
        "status": info.status,
        "start_time": info.start_time,
        "end_time": info.end_time,
        "artifact_uri": info.artifact_uri,
        "lifecycle_stage": info.lifecycle_stage,
        "params": dict(run.data.params),
        "metrics": dict(run.data.metrics),
        "tags": dict(run.data.tags),
        "datasets": [
            {
                "name": d.dataset.name,
                "digest": d.dataset.digest,
                "source_type": d.dataset.source_type,
                "schema": d.dataset.schema,
                "profile": d.dataset.profile,
                "tags": {t.key: t.value for t in d.tags},
            }
            for d in (run.inputs.dataset_inputs if run.inputs else [])
        ],
    }
