"""What an owner sees of and does with an endpoint's deliveries: the deliveries and attempts
lists, one delivery with its attempts, a manual retry, a replay of failures. Use cases mutate
and flush; they never commit."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from runyard.shared.db import utcnow
from runyard.shared.identity import Principal
from runyard.shared.logging import get_logger
from runyard.shared.pagination import cut, decode_cursor
from runyard.webhooks import repository
from runyard.webhooks.endpoints import get_owned_webhook
from runyard.webhooks.errors import DeliveryNotFound, EndpointDisabled
from runyard.webhooks.models import WebhookConfiguration, WebhookDelivery, WebhookLog

log = get_logger(__name__)

#: Cursor kinds of the two lists.
DELIVERIES_LIST = "webhook_deliveries"
ATTEMPTS_LIST = "webhook_attempts"


async def list_deliveries(
    session: AsyncSession,
    *,
    principal: Principal,
    webhook_id: uuid.UUID,
    status: str | None,
    event_type: str | None,
    since: datetime | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[WebhookDelivery], str | None]:
    webhook = await get_owned_webhook(session, principal=principal, webhook_id=webhook_id)
    rows = await repository.list_deliveries(
        session,
        webhook_id=webhook.id,
        status=status,
        event_type=event_type,
        since=since,
        limit=limit,
        after=decode_cursor(cursor, DELIVERIES_LIST, datetime, uuid.UUID),
    )
    return cut(rows, limit, DELIVERIES_LIST, lambda r: (r.created_at, r.id))


async def list_attempts(
    session: AsyncSession,
    *,
    principal: Principal,
    webhook_id: uuid.UUID,
    status: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[WebhookLog], str | None]:
    webhook = await get_owned_webhook(session, principal=principal, webhook_id=webhook_id)
    rows = await repository.list_attempts(
        session,
        webhook_id=webhook.id,
        status=status,
        limit=limit,
        after=decode_cursor(cursor, ATTEMPTS_LIST, datetime, uuid.UUID),
    )
    return cut(rows, limit, ATTEMPTS_LIST, lambda r: (r.sent_at, r.id))


async def _owned_delivery(
    session: AsyncSession, webhook: WebhookConfiguration, delivery_id: uuid.UUID
) -> WebhookDelivery:
    delivery = await repository.get_delivery(
        session, webhook_id=webhook.id, delivery_id=delivery_id
    )
    if delivery is None:
        raise DeliveryNotFound()
    return delivery


async def get_delivery(
    session: AsyncSession, *, principal: Principal, webhook_id: uuid.UUID, delivery_id: uuid.UUID
) -> tuple[WebhookDelivery, Sequence[WebhookLog]]:
    webhook = await get_owned_webhook(session, principal=principal, webhook_id=webhook_id)
    delivery = await _owned_delivery(session, webhook, delivery_id)
    return delivery, await repository.attempts_of_delivery(session, delivery.id)


def _require_active(webhook: WebhookConfiguration) -> None:
    if not webhook.is_active:
        raise EndpointDisabled(webhook.disabled_reason)


async def retry_delivery(
    session: AsyncSession, *, principal: Principal, webhook_id: uuid.UUID, delivery_id: uuid.UUID
) -> WebhookDelivery:
    """Queue one delivery to go out now. A settled one (failed or succeeded) gets exactly one
    more attempt; a pending one keeps its retry schedule if this attempt fails."""
    webhook = await get_owned_webhook(session, principal=principal, webhook_id=webhook_id)
    _require_active(webhook)
    delivery = await _owned_delivery(session, webhook, delivery_id)
    if delivery.status != "pending":
        delivery.automatic_retries = False
    delivery.status = "pending"
    delivery.next_attempt_at = utcnow()
    delivery.trigger_type = "manual_retry"
    delivery.updated_at = utcnow()
    await session.flush()
    log.info("webhooks.delivery.retry_requested", delivery_id=str(delivery.id))
    return delivery


async def replay_failed(
    session: AsyncSession, *, principal: Principal, webhook_id: uuid.UUID, since: datetime
) -> int:
    """Queue every failed delivery created since ``since`` again (one attempt each)."""
    webhook = await get_owned_webhook(session, principal=principal, webhook_id=webhook_id)
    _require_active(webhook)
    queued = await repository.requeue_failed_since(session, webhook_id=webhook.id, since=since)
    log.info("webhooks.delivery.replayed", webhook_id=str(webhook.id), queued=queued)
    return queued
