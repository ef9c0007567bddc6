"""The context of a model registry email (``model.registered``, ``model_version.*``): the
event's one-line summary first ("champion of pump-cnn is now v7 (val_accuracy 0.962 from
experiment pump cnn 7)"), then the model, the version and its lineage."""

from __future__ import annotations

from typing import Any

from runyard.notifications.formatting import facts, format_local
from runyard.notifications.models import User
from runyard.shared.events import CloudEvent


def _metric(payload: Any) -> str | None:
    name, value = getattr(payload, "metric_name", None), getattr(payload, "metric_value", None)
    return None if name is None or value is None else f"{name} {value:.4g}"


def model_context(event: CloudEvent, payload: Any, user: User) -> dict[str, Any]:
    version = getattr(payload, "model_version", None)
    return {
        "model": {"name": payload.model_name, "summary": payload.summary()},
        "facts": facts(
            ("Model", payload.model_name),
            ("Version", None if version is None else f"v{version}"),
            ("Alias", getattr(payload, "alias", None)),
            ("Previous version", _previous(payload)),
            ("Status", getattr(payload, "status", None)),
            ("Experiment", getattr(payload, "experiment_name", None)),
            ("Experiment ID", getattr(payload, "experiment_id", None)),
            ("Metric", _metric(payload)),
            ("SHA-256", getattr(payload, "sha256", None)),
            ("When", format_local(event.time, user.timezone)),
        ),
    }


def _previous(payload: Any) -> str | None:
    previous = getattr(payload, "previous_version", None)
    return None if previous is None else f"v{previous}"
