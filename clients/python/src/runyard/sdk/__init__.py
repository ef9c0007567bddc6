"""The Runyard SDK (``import runyard`` re-exports these names)."""

from __future__ import annotations

from runyard.sdk.api import ApiError, AuthError, RunyardError
from runyard.sdk.hpo import Trial, hpo
from runyard.sdk.run import Run, init, resume
from runyard.sdk.version import __version__

__all__ = [
    "ApiError",
    "AuthError",
    "Run",
    "RunyardError",
    "Trial",
    "__version__",
    "hpo",
    "init",
    "resume",
]
