"""Fan-out: a consumed event becomes one pending delivery per active, matching endpoint of its
owner, unless the owner muted that event type for the endpoint's channel.

The mutes are a read model of the notifications service's preferences
(``notification_preference.updated``). Use cases here mutate and flush; they never commit.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

import runyard.shared.contracts  # noqa: F401  (registers every contract)
from runyard.shared.contracts import all_contracts
from runyard.shared.contracts.notifications import NotificationPreferenceUpdated
from runyard.shared.contracts.webhooks import WebhookTest
from runyard.shared.db import new_id
from runyard.shared.events import CloudEvent, EventPayload
from runyard.shared.logging import get_logger
from runyard.webhooks import metrics, repository
from runyard.webhooks.models import NotificationPreference, WebhookConfiguration

log = get_logger(__name__)

#: Event types that never reach subscribers through fan-out.
PRIVATE_EVENT_TYPES = frozenset({WebhookTest.event_type})


def public_event_types() -> list[str]:
    return sorted({t for t, _v in all_contracts() if t not in PRIVATE_EVENT_TYPES})


def event_matches(patterns: Sequence[str], event_type: str) -> bool:
    """Shell-style match on dotted names: exact types, ``experiment.*`` or ``*``."""
    return any(fnmatchcase(event_type, pattern) for pattern in patterns)


def event_owner(payload: EventPayload) -> uuid.UUID | None:
    owner = getattr(payload, "owner_id", None) or getattr(payload, "user_id", None)
    if owner is None:
        return None
    return owner if isinstance(owner, uuid.UUID) else uuid.UUID(str(owner))


def muted(provider_type: str, preference: NotificationPreference | None) -> bool:
    """Slack endpoints follow ``slack_enabled``; generic and Teams ones ``webhook_enabled``."""
    if preference is None:
        return False
    enabled = preference.slack_enabled if provider_type == "slack" else preference.webhook_enabled
    return not enabled


@dataclass
class _FanOutCache:
    """What fan-out read in this transaction (the consumer handles a partition's batch in one
    transaction): the owner's active endpoints and their mutes, read once per batch."""

    transaction: object
    webhooks: dict[uuid.UUID, list[WebhookConfiguration]] = field(default_factory=dict)
    preferences: dict[tuple[uuid.UUID, str], NotificationPreference | None] = field(
        default_factory=dict
    )


def _fan_out_cache(session: AsyncSession) -> _FanOutCache:
    transaction = session.sync_session.get_transaction()
    cache = session.info.get("webhooks.fan_out")
    if not isinstance(cache, _FanOutCache) or cache.transaction is not transaction:
        cache = _FanOutCache(transaction)
        session.info["webhooks.fan_out"] = cache
    return cache


async def enqueue_deliveries(
    session: AsyncSession, *, owner_id: uuid.UUID, event: CloudEvent
) -> int:
    """One pending delivery per active, matching, not muted endpoint of ``owner_id``;
    idempotent per (endpoint, event id). Returns how many were new."""
    cache = _fan_out_cache(session)
    if owner_id not in cache.webhooks:
        cache.webhooks[owner_id] = list(await repository.active_webhooks_of(session, owner_id))
    webhooks = [w for w in cache.webhooks[owner_id] if event_matches(w.enabled_events, event.type)]
    if not webhooks:
        return 0
    key = (owner_id, event.type)
    if key not in cache.preferences:
        cache.preferences[key] = await repository.preference_for(session, owner_id, event.type)
    preference = cache.preferences[key]
    wanted = [w for w in webhooks if not muted(w.provider_type, preference)]
    if len(wanted) < len(webhooks):
        metrics.MUTED.inc(len(webhooks) - len(wanted))
        log.info("webhooks.fan_out.muted", skipped=len(webhooks) - len(wanted))
    document = event.model_dump(mode="json", exclude_none=True)
    rows: list[dict[str, Any]] = [
        {
            "id": new_id(),
            "webhook_id": webhook.id,
            "event_id": event.id,
            "event_type": event.type,
            "payload": document,
            "status": "pending",
            "attempt_count": 0,
            "trigger_type": "event",
            "automatic_retries": True,
        }
        for webhook in wanted
    ]
    created = await repository.insert_deliveries(session, rows)
    metrics.ENQUEUED.inc(created)
    return created


async def record_preference(
    session: AsyncSession, *, event: CloudEvent, payload: NotificationPreferenceUpdated
) -> None:
    stored = await repository.upsert_preference(
        session,
        user_id=payload.user_id,
        event_type=payload.notification_event_type,
        webhook_enabled=payload.webhook_enabled,
        slack_enabled=payload.slack_enabled,
        event_time=event.time,
    )
    _fan_out_cache(session).preferences.pop(
        (payload.user_id, payload.notification_event_type), None
    )
    log.info(
        "webhooks.preference.recorded" if stored else "webhooks.preference.stale",
        event_type=payload.notification_event_type,
    )
