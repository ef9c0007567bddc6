"""The consumed topics: every public event fans out to its owner's endpoints;
``notification_preference.updated`` also updates the read model of the owner's mutes first."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from runyard.shared.contracts.notifications import NotificationPreferenceUpdated
from runyard.shared.events import CloudEvent, EventPayload
from runyard.shared.inbox import Handler
from runyard.shared.logging import get_logger
from runyard.webhooks import fanout

log = get_logger(__name__)


async def fan_out(session: AsyncSession, event: CloudEvent, payload: EventPayload) -> None:
    owner_id = fanout.event_owner(payload)
    if owner_id is None:
        log.debug("webhooks.fan_out.no_owner")
        return
    created = await fanout.enqueue_deliveries(session, owner_id=owner_id, event=event)
    if created:
        log.info("webhooks.fan_out.enqueued", deliveries=created)


async def preference_updated(
    session: AsyncSession, event: CloudEvent, payload: NotificationPreferenceUpdated
) -> None:
    await fanout.record_preference(session, event=event, payload=payload)
    await fan_out(session, event, payload)


def handlers() -> dict[str, Handler]:
    """One handler per public event type (topic)."""
    found: dict[str, Handler] = dict.fromkeys(fanout.public_event_types(), fan_out)
    found[NotificationPreferenceUpdated.event_type] = preference_updated
    return found
