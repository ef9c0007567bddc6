"""The queries of endpoints, of fan-out (new deliveries, the preferences read model) and of the
owner's deliveries and attempts lists. Claiming and settling deliveries is ``delivery_queue``."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Select, Table, delete, func, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from runyard.webhooks.models import (
    NotificationPreference,
    WebhookConfiguration,
    WebhookDelivery,
    WebhookLog,
)

#: The sort key of the last row of the previous page, (time, id), from its cursor.
Keyset = tuple[Any, ...]
Row = TypeVar("Row")


def newest_first(
    query: Select[Row],
    at: InstrumentedAttribute[datetime],
    row_id: InstrumentedAttribute[uuid.UUID],
    *,
    limit: int,
    after: Keyset | None,
) -> Select[Row]:
    """One page of ``query``, newest first, after the ``after`` key; ``limit + 1`` rows so the
    caller knows whether there is a next page."""
    if after is not None:
        query = query.where(tuple_(at, row_id) < tuple_(*after))
    return query.order_by(at.desc(), row_id.desc()).limit(limit + 1)


async def get_webhook(session: AsyncSession, webhook_id: uuid.UUID) -> WebhookConfiguration | None:
    return await session.get(WebhookConfiguration, webhook_id)


async def get_webhook_for_update(
    session: AsyncSession, webhook_id: uuid.UUID
) -> WebhookConfiguration | None:
    result = await session.execute(
        select(WebhookConfiguration)
        .where(WebhookConfiguration.id == webhook_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return result.scalar_one_or_none()


async def list_webhooks(
    session: AsyncSession, *, owner_id: uuid.UUID, limit: int, after: Keyset | None
) -> Sequence[WebhookConfiguration]:
    query = select(WebhookConfiguration).where(WebhookConfiguration.owner_id == owner_id)
    page = newest_first(
        query,
        WebhookConfiguration.created_at,
        WebhookConfiguration.id,
        limit=limit,
        after=after,
    )
    return (await session.execute(page)).scalars().all()


async def delete_webhook(session: AsyncSession, webhook_id: uuid.UUID) -> None:
    await session.execute(delete(WebhookConfiguration).where(WebhookConfiguration.id == webhook_id))


async def disable_endpoint(
    session: AsyncSession, webhook_id: uuid.UUID, *, reason: str
) -> WebhookConfiguration | None:
    """Switch an active endpoint off; ``None`` if it was not active (nothing to announce)."""
    result = await session.execute(
        update(WebhookConfiguration)
        .where(WebhookConfiguration.id == webhook_id, WebhookConfiguration.is_active.is_(True))
        .values(
            is_active=False,
            disabled_at=func.now(),
            disabled_reason=reason,
            updated_at=func.now(),
        )
        .returning(WebhookConfiguration)
        .execution_options(synchronize_session=False, populate_existing=True)
    )
    return result.scalar_one_or_none()


# --- fan-out: new deliveries, the preferences read model -----------------------------------------


async def active_webhooks_of(
    session: AsyncSession, owner_id: uuid.UUID
) -> Sequence[WebhookConfiguration]:
    result = await session.execute(
        select(WebhookConfiguration).where(
            WebhookConfiguration.owner_id == owner_id, WebhookConfiguration.is_active.is_(True)
        )
    )
    return result.scalars().all()


#: New deliveries, one statement for a whole consumer batch (arrays of the rows' fields, the
#: payload as JSON text). A leased row is due only after the attempt lease (this process's
#: worker sends it); an existing (webhook, event) pair is left alone.
INSERT_DELIVERIES = text(
    "INSERT INTO webhooks.webhook_deliveries (id, webhook_id, event_id, event_type, payload,"
    " status, attempt_count, next_attempt_at, trigger_type, automatic_retries)"
    " SELECT d.id, d.webhook_id, d.event_id, d.event_type, CAST(d.payload AS jsonb), 'pending', 0,"
    " CASE WHEN d.leased THEN now() + make_interval(secs => :lease_s) ELSE now() END,"
    " 'event', true"
    " FROM unnest(CAST(:ids AS uuid[]), CAST(:webhook_ids AS uuid[]), CAST(:event_ids AS text[]),"
    " CAST(:event_types AS text[]), CAST(:payloads AS text[]), CAST(:leased AS boolean[]))"
    " AS d(id, webhook_id, event_id, event_type, payload, leased)"
    " ON CONFLICT (webhook_id, event_id) DO NOTHING RETURNING id"
)


def insert_deliveries_params(
    rows: Sequence[tuple[uuid.UUID, uuid.UUID, str, str, str, bool]], *, lease_s: float
) -> dict[str, Any]:
    """The parameters of ``INSERT_DELIVERIES``: rows of (id, webhook id, event id, event
    type, payload JSON, leased)."""
    ids, webhook_ids, event_ids, event_types, payloads, leased = (
        list(column) for column in zip(*rows, strict=True)
    )
    return {
        "ids": ids,
        "webhook_ids": webhook_ids,
        "event_ids": event_ids,
        "event_types": event_types,
        "payloads": payloads,
        "leased": leased,
        "lease_s": lease_s,
    }


WEBHOOK_LOGS: Table = WebhookLog.__table__  # type: ignore[assignment]


async def insert_attempts(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Attempt log rows (``webhook_logs``), one executemany (batched into multi-row inserts)."""
    if rows:
        await session.execute(insert(WEBHOOK_LOGS), rows)


async def upsert_preference(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    event_type: str,
    webhook_enabled: bool,
    slack_enabled: bool,
    event_time: datetime,
) -> bool:
    """Store the preference unless a newer one is already stored. Returns whether it was."""
    stmt = insert(NotificationPreference).values(
        user_id=user_id,
        event_type=event_type,
        webhook_enabled=webhook_enabled,
        slack_enabled=slack_enabled,
        event_time=event_time,
        updated_at=func.now(),
    )
    upsert = stmt.on_conflict_do_update(
        index_elements=["user_id", "event_type"],
        set_={
            "webhook_enabled": stmt.excluded.webhook_enabled,
            "slack_enabled": stmt.excluded.slack_enabled,
            "event_time": stmt.excluded.event_time,
            "updated_at": func.now(),
        },
        where=NotificationPreference.event_time <= stmt.excluded.event_time,
    ).returning(NotificationPreference.user_id)
    return (await session.execute(upsert)).first() is not None


async def preference_for(
    session: AsyncSession, user_id: uuid.UUID, event_type: str
) -> NotificationPreference | None:
    return await session.get(NotificationPreference, (user_id, event_type))


# --- the owner's deliveries and attempts ---------------------------------------------------------


def like_pattern(pattern: str) -> str:
    """An ``enabled_events``-style pattern (``*`` wildcards) as a LIKE pattern."""
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%")


async def list_deliveries(
    session: AsyncSession,
    *,
    webhook_id: uuid.UUID,
    status: str | None,
    event_type: str | None,
    since: datetime | None,
    limit: int,
    after: Keyset | None,
) -> Sequence[WebhookDelivery]:
    query = select(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook_id)
    if status is not None:
        query = query.where(WebhookDelivery.status == status)
    if event_type is not None:
        query = query.where(WebhookDelivery.event_type.like(like_pattern(event_type), escape="\\"))
    if since is not None:
        query = query.where(WebhookDelivery.created_at >= since)
    page = newest_first(
        query, WebhookDelivery.created_at, WebhookDelivery.id, limit=limit, after=after
    )
    return (await session.execute(page)).scalars().all()


async def get_delivery(
    session: AsyncSession, *, webhook_id: uuid.UUID, delivery_id: uuid.UUID
) -> WebhookDelivery | None:
    result = await session.execute(
        select(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id, WebhookDelivery.webhook_id == webhook_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return result.scalar_one_or_none()


async def attempts_of_delivery(
    session: AsyncSession, delivery_id: uuid.UUID
) -> Sequence[WebhookLog]:
    result = await session.execute(
        select(WebhookLog)
        .where(WebhookLog.delivery_id == delivery_id)
        .order_by(WebhookLog.sent_at, WebhookLog.id)
    )
    return result.scalars().all()


async def requeue_failed_since(
    session: AsyncSession, *, webhook_id: uuid.UUID, since: datetime
) -> int:
    result = await session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.webhook_id == webhook_id,
            WebhookDelivery.status == "failed",
            WebhookDelivery.created_at >= since,
        )
        .values(
            status="pending",
            next_attempt_at=func.now(),
            trigger_type="replay",
            automatic_retries=False,
            updated_at=func.now(),
        )
        .returning(WebhookDelivery.id)
        .execution_options(synchronize_session=False)
    )
    return len(result.all())


async def list_attempts(
    session: AsyncSession,
    *,
    webhook_id: uuid.UUID,
    status: str | None = None,
    limit: int,
    after: Keyset | None,
) -> Sequence[WebhookLog]:
    query = select(WebhookLog).where(WebhookLog.webhook_id == webhook_id)
    if status is not None:
        query = query.where(WebhookLog.status == status)
    page = newest_first(query, WebhookLog.sent_at, WebhookLog.id, limit=limit, after=after)
    return (await session.execute(page)).scalars().all()
