"""MLflow's own checks of a request body, with MLflow's messages, before the handler runs.

MLflow's server checks each JSON body against a per-endpoint schema (``run_id``: required,
a string; ``timestamp``: integer-like, required ...) and answers the first failure as
``INVALID_PARAMETER_VALUE`` with a fixed text: ``Invalid value 31 for parameter 'run_id'
supplied: ...`` or ``Missing value for required parameter 'key'. ...``. Clients and MLflow's
own test-suite match those texts, so the same schemas are checked here, in MLflow's order, on
the raw JSON (pydantic's own messages name the same problem differently).

As in MLflow, a type check only matters when the body does not parse as the endpoint's
message: a value of the right JSON type passes, an enum given by name (``"ACTIVE_ONLY"``)
is not type-checked at all.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from runyard.experiments.mlflow.errors import invalid

_HINT = " See the API docs for more information about request parameters."


class _Failed(Exception):
    """A check failed; ``message`` (when given) replaces the generic text."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message)
        self.message = message


Check = Callable[[Any], None]


def missing_value(path: str) -> str:
    return f"Missing value for required parameter '{path}'."


def invalid_value(path: str, value: Any, message: str | None = None) -> str:
    """MLflow's ``mlflow.utils.validation.invalid_value``."""
    shown = json.dumps(value, sort_keys=True, separators=(",", ":"))
    if message:
        return f"Invalid value {shown} for parameter '{path}' supplied: {message}"
    return f"Invalid value {shown} for parameter '{path}' supplied."


def required(value: Any) -> None:
    if value is None or value == "":
        raise _Failed()


def string(value: Any) -> None:
    if value is not None and not isinstance(value, str):
        raise _Failed()


def intlike(value: Any) -> None:
    if value is None or isinstance(value, int):
        return
    try:
        int(value)
    except (TypeError, ValueError):
        raise _Failed() from None


def floatlike(value: Any) -> None:
    if value is None or isinstance(value, (int, float)):
        return
    try:
        float(value)
    except (TypeError, ValueError):
        raise _Failed() from None


def array(value: Any) -> None:
    if value is not None and not isinstance(value, list):
        raise _Failed()


def strings(value: Any) -> None:
    if isinstance(value, list) and not all(isinstance(item, str) for item in value):
        raise _Failed()


def at_most(limit: int) -> Check:
    def check(value: Any) -> None:
        try:
            too_big = value is not None and int(value) > limit
        except (TypeError, ValueError):
            return  # the type check reports it
        if too_big:
            raise _Failed()

    return check


def entries_with(name: str, *fields: str) -> Check:
    """log-batch: each entry of ``name`` has its required fields (``metrics[0].timestamp``)."""

    def check(value: Any) -> None:
        if not isinstance(value, list):
            return
        for index, entry in enumerate(value):
            if not isinstance(entry, dict):
                continue
            for field in fields:
                if entry.get(field) is None or entry.get(field) == "":
                    raise _Failed(missing_value(f"{name}[{index}].{field}"))

    return check


#: MLflow 3.17's schemas (``mlflow/server/handlers.py``), by path below the API prefix
SCHEMAS: dict[str, dict[str, list[Check]]] = {
    "/experiments/create": {
        "name": [required, string],
        "artifact_location": [string],
        "tags": [array],
    },
    "/experiments/delete": {"experiment_id": [required, string]},
    "/experiments/restore": {"experiment_id": [required, string]},
    "/experiments/update": {"experiment_id": [required, string], "new_name": [string, required]},
    "/experiments/set-experiment-tag": {
        "experiment_id": [required, string],
        "key": [required, string],
        "value": [string],
    },
    "/experiments/delete-experiment-tag": {
        "experiment_id": [required, string],
        "key": [required, string],
    },
    "/experiments/search": {
        "max_results": [intlike],
        "order_by": [array],
        "filter": [string],
        "page_token": [string],
    },
    "/runs/create": {"experiment_id": [string], "start_time": [intlike], "run_name": [string]},
    "/runs/update": {
        "run_id": [required, string],
        "end_time": [intlike],
        "status": [string],
        "run_name": [string],
    },
    "/runs/delete": {"run_id": [required, string]},
    "/runs/restore": {"run_id": [required, string]},
    "/runs/log-metric": {
        "run_id": [required, string],
        "key": [required, string],
        "value": [required, floatlike],
        "timestamp": [intlike, required],
        "step": [intlike],
        "model_id": [string],
        "dataset_name": [string],
        "dataset_digest": [string],
    },
    "/runs/log-parameter": {
        "run_id": [required, string],
        "key": [required, string],
        "value": [string],
    },
    "/runs/set-tag": {"run_id": [required, string], "key": [required, string], "value": [string]},
    "/runs/delete-tag": {"run_id": [required, string], "key": [required, string]},
    "/runs/log-inputs": {"run_id": [required, string], "datasets": [array], "models": [array]},
    "/runs/outputs": {"run_id": [required, string], "models": [required, array]},
    "/runs/log-model": {"run_id": [string, required], "model_json": [string, required]},
    "/runs/log-batch": {
        "run_id": [string, required],
        "metrics": [array, entries_with("metrics", "key", "value", "timestamp")],
        "params": [array, entries_with("params", "key")],
        "tags": [array, entries_with("tags", "key")],
    },
    "/runs/search": {
        "experiment_ids": [array],
        "filter": [string],
        "max_results": [intlike, at_most(50000)],
        "order_by": [array, strings],
    },
}


def _fail(param: str, value: Any, check: Check, failure: _Failed) -> None:
    if failure.message is not None:
        message = failure.message
    elif check is required:
        message = missing_value(param)
    else:
        message = invalid_value(param, value, f" Hint: Value was of type '{type(value).__name__}'.")
    raise invalid(message + _HINT)


def check_body(path: str, body: Any) -> None:
    """Raise MLflow's ``INVALID_PARAMETER_VALUE`` for the first field of ``body`` that fails
    the schema of the endpoint at ``path`` (a path without a schema is not checked)."""
    schema = SCHEMAS.get(path)
    if schema is None or not isinstance(body, dict):
        return
    for param, checks in schema.items():
        if param not in body and required not in checks:
            continue
        value = body.get(param)
        if param == "run_id" and value is None and "run_uuid" in body:
            value = body.get("run_uuid")
        for check in checks:
            try:
                check(value)
            except _Failed as failure:
                _fail(param, value, check, failure)


def schema_path(route_path: str) -> str:
    """``/api/2.0/mlflow/runs/log-metric`` (or the ajax prefix) -> ``/runs/log-metric``."""
    marker = "/2.0/mlflow"
    at = route_path.find(marker)
    return route_path[at + len(marker) :] if at >= 0 else route_path


__all__ = ["SCHEMAS", "check_body", "invalid_value", "missing_value", "schema_path"]
