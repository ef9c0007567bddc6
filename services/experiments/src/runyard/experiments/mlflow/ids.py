"""MLflow ids of Runyard rows: an experiment id is a project's uuid (``"0"``: the virtual
Default experiment, the caller's experiments without a project), a run id an experiment's uuid
as 32 hex digits (the dashed form is accepted too)."""

from __future__ import annotations

import uuid

from runyard.experiments.mlflow.errors import invalid, not_found

#: the id and name of MLflow's Default experiment
DEFAULT_EXPERIMENT_ID = "0"
DEFAULT_EXPERIMENT_NAME = "Default"


def run_id_of(experiment_id: uuid.UUID) -> str:
    return experiment_id.hex


def parse_run_id(value: str | None) -> uuid.UUID:
    """A run id the client sent; a malformed one names no run (404, as MLflow answers)."""
    if not value:
        raise invalid("Missing value for required parameter 'run_id'.")
    try:
        return uuid.UUID(value)
    except ValueError:
        raise not_found(f"Run with id={value} not found") from None


def experiment_id_of(project_id: uuid.UUID | None) -> str:
    return DEFAULT_EXPERIMENT_ID if project_id is None else str(project_id)


def parse_experiment_id(value: str | None) -> uuid.UUID | None:
    """None for the Default experiment ``"0"``; a malformed id names no experiment (404)."""
    if value is None or value == "":
        raise invalid("Missing value for required parameter 'experiment_id'.")
    if value == DEFAULT_EXPERIMENT_ID:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        raise not_found(f"No Experiment with id={value} exists") from None


def artifact_location(experiment_id: str) -> str:
    return f"mlflow-artifacts:/{experiment_id}"


def artifact_uri(experiment_id: str, run_id: str) -> str:
    return f"mlflow-artifacts:/{experiment_id}/{run_id}/artifacts"
