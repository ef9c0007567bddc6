"""The consumed topics: every public event fans out to its owner's endpoints;
``notification_preference.updated`` also updates the read model of the owner's mutes first."""

from __future__ import annotations

from functools import partial

from sqlalchemy.ext.asyncio import AsyncSession

from runyard.shared.contracts.notifications import NotificationPreferenceUpdated
from runyard.shared.events import CloudEvent, EventPayload
from runyard.shared.inbox import Handler
from runyard.shared.logging import get_logger
from runyard.webhooks import fanout
from runyard.webhooks.handoff import Handoff

log = get_logger(__name__)


async def fan_out(
    session: AsyncSession, event: CloudEvent, payload: EventPayload, handoff: Handoff | None = None
) -> None:
    owner_id = fanout.event_owner(payload)
    if owner_id is None:
        log.debug("webhooks.fan_out.no_owner")
        return
    # inserted with the batch's others at its commit (``webhooks.fan_out.inserted``)
    await fanout.enqueue_deliveries(session, owner_id=owner_id, event=event, handoff=handoff)


async def preference_updated(
    session: AsyncSession,
    event: CloudEvent,
    payload: NotificationPreferenceUpdated,
    handoff: Handoff | None = None,
) -> None:
    await fanout.record_preference(session, event=event, payload=payload)
    await fan_out(session, event, payload, handoff)


def handlers(handoff: Handoff | None = None) -> dict[str, Handler]:
    """One handler per public event type (topic). With ``handoff``, new deliveries go straight
    to this process's delivery worker when it has room (see ``handoff``)."""
    found: dict[str, Handler] = dict.fromkeys(
        fanout.public_event_types(), partial(fan_out, handoff=handoff)
    )
    found[NotificationPreferenceUpdated.event_type] = partial(preference_updated, handoff=handoff)
    return found
