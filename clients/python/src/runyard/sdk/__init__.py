"""The Runyard SDK (``import runyard`` re-exports these names)."""

from __future__ import annotations

from runyard.sdk.alerts import Alert, alerts
from runyard.sdk.api import ApiError, AuthError, RunyardError
from runyard.sdk.hpo import Trial, hpo
from runyard.sdk.models import (
    delete_alias,
    flush_predictions,
    get_model_version,
    log_predictions,
    register_model,
    set_alias,
)
from runyard.sdk.run import Run, init, resume
from runyard.sdk.version import __version__

__all__ = [
    "Alert",
    "ApiError",
    "AuthError",
    "Run",
    "RunyardError",
    "Trial",
    "__version__",
    "alerts",
    "delete_alias",
    "flush_predictions",
    "get_model_version",
    "hpo",
    "init",
    "log_predictions",
    "register_model",
    "resume",
    "set_alias",
]
