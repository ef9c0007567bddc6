"""Event handlers. The shared EventConsumer runs each inside its inbox-guarded transaction."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from runyard.notifications import dispatch, notices, service
from runyard.notifications.config import Settings
from runyard.notifications.service import Options
from runyard.shared.contracts.auth import UserDeactivated, UserRegistered, UserUpdated
from runyard.shared.db import utcnow
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


def make_handlers(
    settings: Settings, *, clock: Callable[[], datetime] = utcnow
) -> dict[str, Handler]:
    """``clock`` decides digest times and throttle windows (tests pass a fixed one)."""
    options = Options.from_settings(settings, clock=clock)

    async def on_user_snapshot(
        session: AsyncSession, event: CloudEvent, payload: UserRegistered | UserUpdated
    ) -> None:
        await service.apply_user_snapshot(
            session, payload, sequence=event_sequence(event), options=options
        )

    async def on_user_deactivated(
        session: AsyncSession, event: CloudEvent, payload: UserDeactivated
    ) -> None:
        await service.deactivate_user(
            session, payload, sequence=event_sequence(event), options=options
        )

    async def on_notifiable_event(session: AsyncSession, event: CloudEvent, payload: Any) -> None:
        await dispatch.notify(session, event=event, payload=payload, options=options)

    handlers: dict[str, Handler] = {
        UserRegistered.event_type: on_user_snapshot,
        UserUpdated.event_type: on_user_snapshot,
        UserDeactivated.event_type: on_user_deactivated,
    }
    for event_type in notices.NOTICES:
        handlers[event_type] = on_notifiable_event
    return handlers
