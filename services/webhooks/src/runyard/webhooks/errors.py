"""The webhooks service's domain errors, each a problem+json answer."""

from __future__ import annotations

from runyard.shared.http import ProblemError


class InvalidField(ProblemError):
    """422: a field of the request body has the right shape but cannot be accepted."""

    def __init__(self, field: str, message: str, *loc: str | int) -> None:
        super().__init__(
            422,
            "Validation failed",
            message,
            errors=[{"loc": ["body", field, *loc], "msg": message, "type": "value_error"}],
        )


class WebhookNotFound(ProblemError):
    """404: no such webhook, or it is someone else's."""

    def __init__(self) -> None:
        super().__init__(404, "Not Found", "No such webhook.")


class DeliveryNotFound(ProblemError):
    """404: the webhook has no such delivery."""

    def __init__(self) -> None:
        super().__init__(404, "Not Found", "No such delivery.")


class WebhookUrlTaken(ProblemError):
    """409: the owner already has a webhook for this URL."""

    def __init__(self) -> None:
        super().__init__(409, "Conflict", "You already have a webhook for this URL.")


class EndpointDisabled(ProblemError):
    """409: retries and replays need an active endpoint."""

    def __init__(self, disabled_reason: str | None) -> None:
        super().__init__(
            409,
            "Conflict",
            "The endpoint is disabled; enable it first (POST /api/v1/webhooks/{id}/enable).",
            disabled_reason=disabled_reason,
        )
