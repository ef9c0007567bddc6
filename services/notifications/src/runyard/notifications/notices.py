"""Which event becomes which email, and how it is rendered for its recipient.

The one place an email is rendered from an event: at once when the recipient is known, or later
when an email parked for a user not yet known is released (see ``service``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from runyard.notifications.mailer import RenderedEmail, render_email
from runyard.notifications.models import User
from runyard.shared.contracts.auth import LoginFailed
from runyard.shared.contracts.experiments import ExperimentCompleted
from runyard.shared.contracts.webhooks import WebhookEndpointDisabled
from runyard.shared.events import CloudEvent


def format_local(moment: datetime | None, timezone: str) -> str:
    if moment is None:
        return "unknown"
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S %Z")


def format_duration(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s"


def format_metric(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def user_context(user: User) -> dict[str, Any]:
    return {
        "id": str(user.user_id),
        "username": user.username,
        "display_name": user.full_name or user.username,
        "timezone": user.timezone,
    }


def experiment_completed_context(
    event: CloudEvent, payload: ExperimentCompleted, user: User
) -> dict[str, Any]:
    return {
        "experiment": {
            "id": str(payload.experiment_id),
            "name": payload.name,
            "model_type": payload.model_type,
            "total_epochs": payload.total_epochs,
            "best_epoch": payload.best_epoch,
            "duration": format_duration(payload.duration_seconds),
            "ended_at": format_local(payload.ended_at or event.time, user.timezone),
            "metrics": [
                (name, format_metric(value))
                for name, value in sorted(payload.final_metrics.items())
            ],
        }
    }


def login_failed_context(event: CloudEvent, payload: LoginFailed, user: User) -> dict[str, Any]:
    return {
        "attempt": {
            "occurred_at": format_local(event.time, user.timezone),
            "ip_address": payload.ip_address,
            "user_agent": payload.user_agent,
            "reason": payload.reason,
            "consecutive_failures": payload.consecutive_failures,
        }
    }


def endpoint_disabled_context(
    event: CloudEvent, payload: WebhookEndpointDisabled, user: User
) -> dict[str, Any]:
    return {
        "webhook": {
            "id": str(payload.webhook_id),
            "name": payload.name,
            "url": payload.url,
            "reason": payload.reason,
            "consecutive_failures": payload.consecutive_failures,
            "disabled_at": format_local(event.time, user.timezone),
        }
    }


@dataclass(frozen=True)
class Notice:
    template_name: str
    #: (event, its validated payload, recipient) -> the template's context besides ``user``
    context: Callable[[CloudEvent, Any, User], dict[str, Any]]


NOTICES: dict[str, Notice] = {
    ExperimentCompleted.event_type: Notice("experiment_completed", experiment_completed_context),
    LoginFailed.event_type: Notice("login_failed", login_failed_context),
    WebhookEndpointDisabled.event_type: Notice(
        "webhook_endpoint_disabled", endpoint_disabled_context
    ),
}


def template_name(event_type: str) -> str:
    return NOTICES[event_type].template_name


def render_notice(event: CloudEvent, user: User) -> RenderedEmail:
    """The email ``event`` means for ``user``; raises on a payload that does not validate."""
    notice = NOTICES[event.type]
    context = notice.context(event, event.payload(), user)
    return render_email(notice.template_name, {"user": user_context(user), **context})
