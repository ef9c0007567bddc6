"""Fan-out: every public event becomes one pending delivery per matching endpoint of its owner."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from runyard.shared.events import CloudEvent, EventPayload
from runyard.shared.inbox import Handler
from runyard.shared.logging import get_logger
from runyard.webhooks import service

log = get_logger(__name__)


async def fan_out(session: AsyncSession, event: CloudEvent, payload: EventPayload) -> None:
    owner_id = service.event_owner(payload)
    if owner_id is None:
        log.debug("webhooks.fan_out.no_owner")
        return
    created = await service.enqueue_deliveries(session, owner_id=owner_id, event=event)
    if created:
        log.info("webhooks.fan_out.enqueued", deliveries=created)


def handlers() -> dict[str, Handler]:
    """One handler per public event type (topic)."""
    return dict.fromkeys(service.public_event_types(), fan_out)
