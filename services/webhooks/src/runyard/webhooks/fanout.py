"""Fan-out: a consumed event becomes one pending delivery per active, matching endpoint of its
owner, unless the owner muted that event type for the endpoint's channel.

The mutes are a read model of the notifications service's preferences
(``notification_preference.updated``). Use cases here mutate and flush; they never commit.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

import runyard.shared.contracts  # noqa: F401  (registers every contract)
from runyard.shared.contracts import all_contracts
from runyard.shared.contracts.experiments import (
    DatasetGenerationProgressed,
    DatasetImportProgressed,
)
from runyard.shared.contracts.notifications import NotificationPreferenceUpdated
from runyard.shared.contracts.webhooks import WebhookDeliveriesUpdated, WebhookTest
from runyard.shared.db import new_id, utcnow
from runyard.shared.events import CloudEvent, EventPayload
from runyard.shared.logging import get_logger
from runyard.webhooks import metrics, repository
from runyard.webhooks.formats import canonical_json
from runyard.webhooks.handoff import Handoff
from runyard.webhooks.models import NotificationPreference, WebhookConfiguration

if TYPE_CHECKING:  # attempts -> endpoints -> fanout
    from runyard.webhooks.attempts import ClaimedDelivery

log = get_logger(__name__)

#: Event types that never reach subscribers through fan-out (the service does not even read
#: their topics): the test event, and the live-progress events meant for the console: a job's
#: progress (several a second) and the deliveries' own news (it would announce itself).
PRIVATE_EVENT_TYPES = frozenset(
    {
        WebhookTest.event_type,
        WebhookDeliveriesUpdated.event_type,
        DatasetGenerationProgressed.event_type,
        DatasetImportProgressed.event_type,
    }
)


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
class _NewDelivery:
    id: uuid.UUID
    webhook: WebhookConfiguration
    event_id: str
    event_type: str
    document: dict[str, Any]
    #: the document as canonical JSON: stored, and the body of a generic endpoint's request
    body: str


@dataclass
class _FanOutCache:
    """What fan-out read and wrote in this transaction (the consumer handles a partition's
    batch in one transaction): the owner's active endpoints and their mutes, read once per
    batch, and the batch's new deliveries, inserted in one statement when it commits."""

    transaction: object
    handoff: Handoff | None = None
    webhooks: dict[uuid.UUID, list[WebhookConfiguration]] = field(default_factory=dict)
    preferences: dict[tuple[uuid.UUID, str], NotificationPreference | None] = field(
        default_factory=dict
    )
    new: list[_NewDelivery] = field(default_factory=list)
    #: leases reserved with the handoff, and the deliveries it gets after the commit
    reserved: int = 0
    handed: list[ClaimedDelivery] = field(default_factory=list)


_CACHE = "webhooks.fan_out"


def _fan_out_cache(session: AsyncSession, handoff: Handoff | None = None) -> _FanOutCache:
    sync = session.sync_session
    transaction = sync.get_transaction()
    cache = session.info.get(_CACHE)
    if not isinstance(cache, _FanOutCache) or cache.transaction is not transaction:
        cache = _FanOutCache(transaction, handoff)
        session.info[_CACHE] = cache
        if not session.info.get(_CACHE + ".listening"):
            session.info[_CACHE + ".listening"] = True
            event.listen(sync, "before_commit", _insert_new_deliveries)
            event.listen(sync, "after_commit", _hand_over)
            event.listen(sync, "after_rollback", _release)
    return cache


def _current(session: Session) -> _FanOutCache | None:
    cache = session.info.get(_CACHE)
    if isinstance(cache, _FanOutCache) and cache.transaction is session.get_transaction():
        return cache
    return None


def handed_over(webhook: WebhookConfiguration, now: datetime) -> bool:
    """Whether a new delivery to this endpoint may skip the claim: not rate limited (those
    take their slots in the claim) and not held back after a 429."""
    limited = (
        webhook.provider_type == "slack"
        or (webhook.settings or {}).get("rate_limit_per_second") is not None
        or (webhook.next_send_at is not None and webhook.next_send_at > now)
    )
    return not limited


def _insert_new_deliveries(session: Session) -> None:
    """``before_commit``: the transaction's new deliveries in one statement (inside the
    commit's greenlet, so synchronously); the ones the handoff takes are inserted leased."""
    from runyard.webhooks.attempts import ClaimedDelivery

    cache = _current(session)
    if cache is None or not cache.new:
        return
    new, cache.new = cache.new, []
    handoff = cache.handoff
    now = utcnow()
    eligible = [n for n in new if handed_over(n.webhook, now)] if handoff else []
    granted = handoff.reserve(len(eligible)) if handoff else 0
    cache.reserved += granted
    leased = {n.id for n in eligible[:granted]}
    result = session.execute(
        repository.INSERT_DELIVERIES,
        repository.insert_deliveries_params(
            [(n.id, n.webhook.id, n.event_id, n.event_type, n.body, n.id in leased) for n in new],
            lease_s=handoff.lease_s if handoff else 0.0,
        ),
    )
    created = {row[0] for row in result}
    metrics.ENQUEUED.inc(len(created))
    log.info("webhooks.fan_out.inserted", deliveries=len(created), handed=len(leased))
    cache.handed = [
        ClaimedDelivery.of(
            n.webhook,
            delivery_id=n.id,
            event_id=n.event_id,
            event_type=n.event_type,
            payload=n.document,
            attempt_number=1,
            body=n.body if n.webhook.provider_type == "generic" else None,
        )
        for n in new
        if n.id in leased and n.id in created
    ]


def _hand_over(session: Session) -> None:
    """``after_commit``: the leased deliveries to this process's worker."""
    cache = _current(session) or session.info.get(_CACHE)
    if isinstance(cache, _FanOutCache) and cache.handoff is not None and cache.reserved:
        reserved, cache.reserved = cache.reserved, 0
        handed, cache.handed = cache.handed, []
        cache.handoff.deliver(reserved, handed)


def _release(session: Session) -> None:
    """``after_rollback``: nothing was inserted; the reserved leases go back."""
    cache = session.info.get(_CACHE)
    if isinstance(cache, _FanOutCache) and cache.handoff is not None and cache.reserved:
        reserved, cache.reserved = cache.reserved, 0
        cache.handed = []
        cache.handoff.release(reserved)


async def enqueue_deliveries(
    session: AsyncSession,
    *,
    owner_id: uuid.UUID,
    event: CloudEvent,
    handoff: Handoff | None = None,
) -> int:
    """One pending delivery per active, matching, not muted endpoint of ``owner_id``;
    idempotent per (endpoint, event id). The deliveries are inserted when the transaction
    commits, all of its events' at once (so this transaction sees them only then); returns
    how many are to be inserted."""
    cache = _fan_out_cache(session, handoff)
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
    if not wanted:
        return 0
    document = event.model_dump(mode="json", exclude_none=True)
    body = canonical_json(document)
    cache.new.extend(
        _NewDelivery(new_id(), webhook, event.id, event.type, document, body) for webhook in wanted
    )
    return len(wanted)


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
