"""The notifications service's domain errors, each rendered as problem+json with its status.

An invalid ``?cursor=`` is ``runyard.shared.pagination.InvalidCursor`` (400 "Invalid cursor").
"""

from __future__ import annotations

from collections.abc import Iterable

from runyard.shared.http import ProblemError


class NotificationNotFound(ProblemError):
    """404: no such notification in the caller's inbox (someone else's counts as none)."""

    def __init__(self) -> None:
        super().__init__(404, "Not Found", "No such notification in your inbox.")


class UnknownEventType(ProblemError):
    """404: preferences exist only for the event types that notify."""

    def __init__(self, event_type: str, known: Iterable[str]) -> None:
        super().__init__(
            404,
            "Not Found",
            f"No notifications exist for event type {event_type!r}; known types: "
            + ", ".join(sorted(known)),
        )


class SecurityAlertAlwaysEmailed(ProblemError):
    """409: a security alert's emails cannot be switched off or moved to a digest."""

    def __init__(self, event_type: str) -> None:
        super().__init__(
            409,
            "Conflict",
            f"{event_type} is a security alert: its emails are always sent at once and cannot "
            "be switched off or moved to a digest (email_enabled must stay true and "
            "email_frequency 'immediate'); the in-app, Slack and webhook channels can be changed.",
        )


class InvalidUnsubscribeLink(ProblemError):
    """400: the unsubscribe token is tampered with, malformed or expired."""

    def __init__(self) -> None:
        super().__init__(
            400,
            "Bad Request",
            "This unsubscribe link is invalid or has expired. Change your notification "
            "preferences in Runyard instead.",
        )
