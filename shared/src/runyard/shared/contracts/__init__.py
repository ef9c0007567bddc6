"""Event payload contracts. Importing this package registers every contract."""

from runyard.shared.contracts import auth, experiments, gateway, notifications, webhooks
from runyard.shared.events import EventPayload

__all__ = ["EventPayload", "auth", "experiments", "gateway", "notifications", "webhooks"]


def all_contracts() -> dict[tuple[str, int], type[EventPayload]]:
    return dict(EventPayload.registry)
