"""Event handlers. The shared EventConsumer runs each inside its inbox-guarded transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.ext.asyncio import AsyncSession

from runyard.notifications import repository, service
from runyard.shared.contracts.auth import LoginFailed, UserDeactivated, UserRegistered, UserUpdated
from runyard.shared.contracts.experiments import ExperimentCompleted
from runyard.shared.events import CloudEvent
from runyard.shared.inbox import Handler
from runyard.shared.logging import get_logger

log = get_logger(__name__)


def event_sequence(event: CloudEvent) -> int:
    """The aggregate version auth stamps on user events; 0 (oldest possible) if absent."""
    if event.sequence is not None and event.sequence.isdigit():
        return int(event.sequence)
    log.warning("notifications.event.sequence_missing", sequence=event.sequence)
    return 0


async def on_user_snapshot(
    session: AsyncSession, event: CloudEvent, payload: UserRegistered | UserUpdated
) -> None:
    await service.apply_user_snapshot(
        session,
        user_id=payload.user_id,
        username=payload.username,
        email=payload.email,
        full_name=payload.full_name,
        role=payload.role,
        is_active=payload.is_active,
        timezone=payload.timezone,
        sequence=event_sequence(event),
    )


async def on_user_deactivated(
    session: AsyncSession, event: CloudEvent, payload: UserDeactivated
) -> None:
    await service.deactivate_user(
        session,
        user_id=payload.user_id,
        username=payload.username,
        sequence=event_sequence(event),
    )


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


async def on_experiment_completed(
    session: AsyncSession, event: CloudEvent, payload: ExperimentCompleted
) -> None:
    user = await repository.get_user(session, payload.owner_id)
    timezone = user.timezone if user is not None else "UTC"
    await service.queue_email_for_user(
        session,
        user_id=payload.owner_id,
        template_name="experiment_completed",
        context={
            "experiment": {
                "id": str(payload.experiment_id),
                "name": payload.name,
                "model_type": payload.model_type,
                "total_epochs": payload.total_epochs,
                "best_epoch": payload.best_epoch,
                "duration": format_duration(payload.duration_seconds),
                "ended_at": format_local(payload.ended_at or event.time, timezone),
                "metrics": [
                    (name, format_metric(value))
                    for name, value in sorted(payload.final_metrics.items())
                ],
            }
        },
        event=event,
    )


async def on_login_failed(session: AsyncSession, event: CloudEvent, payload: LoginFailed) -> None:
    if payload.user_id is None:
        log.info("notifications.email.skipped", reason="login_failed_unknown_user")
        return
    user = await repository.get_user(session, payload.user_id)
    timezone = user.timezone if user is not None else "UTC"
    await service.queue_email_for_user(
        session,
        user_id=payload.user_id,
        template_name="login_failed",
        context={
            "attempt": {
                "occurred_at": format_local(event.time, timezone),
                "ip_address": payload.ip_address,
                "user_agent": payload.user_agent,
                "reason": payload.reason,
                "consecutive_failures": payload.consecutive_failures,
            }
        },
        event=event,
    )


HANDLERS: dict[str, Handler] = {
    UserRegistered.event_type: on_user_snapshot,
    UserUpdated.event_type: on_user_snapshot,
    UserDeactivated.event_type: on_user_deactivated,
    ExperimentCompleted.event_type: on_experiment_completed,
    LoginFailed.event_type: on_login_failed,
}
