"""Runyard's Python SDK: log a training run in one line, durably, without slowing the loop.

    import runyard
    with runyard.init(name="pump cnn", model_type="cnn1d") as run:
        for epoch in range(1, 101):
            run.log({"train_loss": loss, "val_accuracy": acc}, epoch=epoch)

``runyard`` is also the namespace of the platform's own packages (``runyard.shared``,
``runyard.auth``, ...), which have no ``__init__.py``. Installed next to them, this file makes
``runyard`` a regular package, so it extends ``__path__`` over every other ``runyard`` directory
on ``sys.path`` (pkgutil-style) and loads the SDK only when one of its names is used: importing
``runyard.shared`` costs nothing more than that.
"""

from __future__ import annotations

from pkgutil import extend_path
from typing import TYPE_CHECKING, Any

__path__ = extend_path(__path__, __name__)

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

if TYPE_CHECKING:
    from runyard.sdk import (
        Alert,
        ApiError,
        AuthError,
        Run,
        RunyardError,
        Trial,
        __version__,
        alerts,
        delete_alias,
        flush_predictions,
        get_model_version,
        hpo,
        init,
        log_predictions,
        register_model,
        resume,
        set_alias,
    )


def __getattr__(name: str) -> Any:
    if name in __all__:
        import runyard.sdk

        return getattr(runyard.sdk, name)
    raise AttributeError(f"module 'runyard' has no attribute {name!r}")
