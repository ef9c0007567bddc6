"""Event payload contracts. Importing this package registers every contract."""

from runyard.shared.contracts import alerts as alerts  # alert rules' events
from runyard.shared.contracts import auth, experiments, gateway, notifications, webhooks
from runyard.shared.contracts import models as models  # the model registry's events
from runyard.shared.events import EventPayload

__all__ = ["EventPayload", "auth", "experiments", "gateway", "notifications", "webhooks"]


def all_contracts() -> dict[tuple[str, int], type[EventPayload]]:
    """The project's published contracts (not payload classes that tests define on the fly)."""
    return {
        key: model
        for key, model in EventPayload.registry.items()
        if model.__module__.startswith(__name__ + ".")
    }
