"""Event handlers. The shared EventConsumer runs each inside its inbox-guarded transaction."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from runyard.notifications import service
from runyard.notifications.config import Settings
from runyard.shared.contracts.auth import LoginFailed, UserDeactivated, UserRegistered, UserUpdated
from runyard.shared.contracts.experiments import ExperimentCompleted
from runyard.shared.contracts.webhooks import WebhookEndpointDisabled
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


async def on_experiment_completed(
    session: AsyncSession, event: CloudEvent, payload: ExperimentCompleted
) -> None:
    await service.queue_email_for_user(session, user_id=payload.owner_id, event=event)


async def on_webhook_endpoint_disabled(
    session: AsyncSession, event: CloudEvent, payload: WebhookEndpointDisabled
) -> None:
    await service.queue_email_for_user(session, user_id=payload.owner_id, event=event)


async def on_login_failed(session: AsyncSession, event: CloudEvent, payload: LoginFailed) -> None:
    if payload.user_id is None:
        log.info("notifications.email.skipped", reason="login_failed_unknown_user")
        return
    await service.queue_email_for_user(session, user_id=payload.user_id, event=event)


def make_handlers(settings: Settings) -> dict[str, Handler]:
    parked_max_age = timedelta(seconds=settings.email_awaiting_user_max_age_s)

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
            parked_max_age=parked_max_age,
        )

    async def on_user_deactivated(
        session: AsyncSession, event: CloudEvent, payload: UserDeactivated
    ) -> None:
        await service.deactivate_user(
            session,
            user_id=payload.user_id,
            username=payload.username,
            sequence=event_sequence(event),
            parked_max_age=parked_max_age,
        )

    return {
        UserRegistered.event_type: on_user_snapshot,
        UserUpdated.event_type: on_user_snapshot,
        UserDeactivated.event_type: on_user_deactivated,
        ExperimentCompleted.event_type: on_experiment_completed,
        LoginFailed.event_type: on_login_failed,
        WebhookEndpointDisabled.event_type: on_webhook_endpoint_disabled,
    }
