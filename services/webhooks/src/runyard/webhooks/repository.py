"""Every query of the webhooks service."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from runyard.webhooks.models import WebhookConfiguration, WebhookDelivery, WebhookLog

Keyset = tuple[datetime, uuid.UUID]


async def get_webhook(session: AsyncSession, webhook_id: uuid.UUID) -> WebhookConfiguration | None:
    return await session.get(WebhookConfiguration, webhook_id)


async def webhook_url_taken(session: AsyncSession, *, owner_id: uuid.UUID, url: str) -> bool:
    found = await session.execute(
        select(WebhookConfiguration.id).where(
            WebhookConfiguration.owner_id == owner_id, WebhookConfiguration.url == url
        )
    )
    return found.first() is not None


async def list_webhooks(
    session: AsyncSession, *, owner_id: uuid.UUID, limit: int, after: Keyset | None
) -> Sequence[WebhookConfiguration]:
    """Newest first; ``limit + 1`` rows so the caller knows whether there is a next page."""
    query = select(WebhookConfiguration).where(WebhookConfiguration.owner_id == owner_id)
    if after is not None:
        query = query.where(
            tuple_(WebhookConfiguration.created_at, WebhookConfiguration.id) < tuple_(*after)
        )
    query = query.order_by(
        WebhookConfiguration.created_at.desc(), WebhookConfiguration.id.desc()
    ).limit(limit + 1)
    return (await session.execute(query)).scalars().all()


async def delete_webhook(session: AsyncSession, webhook_id: uuid.UUID) -> None:
    await session.execute(delete(WebhookConfiguration).where(WebhookConfiguration.id == webhook_id))


async def active_webhooks_of(
    session: AsyncSession, owner_id: uuid.UUID
) -> Sequence[WebhookConfiguration]:
    result = await session.execute(
        select(WebhookConfiguration).where(
            WebhookConfiguration.owner_id == owner_id, WebhookConfiguration.is_active.is_(True)
        )
    )
    return result.scalars().all()


async def insert_deliveries(session: AsyncSession, rows: list[dict[str, Any]]) -> int:
    """Insert pending deliveries due now; an existing (webhook, event) pair is left alone."""
    if not rows:
        return 0
    stmt = (
        insert(WebhookDelivery)
        .values([{**row, "next_attempt_at": func.now()} for row in rows])
        .on_conflict_do_nothing(index_elements=["webhook_id", "event_id"])
        .returning(WebhookDelivery.id)
    )
    return len((await session.execute(stmt)).all())


async def claim_due_deliveries(
    session: AsyncSession, *, limit: int, lease: timedelta
) -> Sequence[tuple[WebhookDelivery, WebhookConfiguration]]:
    """Lock due deliveries of active endpoints (skipping ones another worker holds) and push
    their ``next_attempt_at`` past the lease, so a worker that dies mid-attempt is retried."""
    due = await session.execute(
        select(WebhookDelivery, WebhookConfiguration)
        .join(WebhookConfiguration, WebhookConfiguration.id == WebhookDelivery.webhook_id)
        .where(
            WebhookDelivery.status == "pending",
            WebhookDelivery.next_attempt_at <= func.now(),
            WebhookConfiguration.is_active.is_(True),
        )
        .order_by(WebhookDelivery.next_attempt_at)
        .limit(limit)
        .with_for_update(of=WebhookDelivery, skip_locked=True)
    )
    claimed = [(d, c) for d, c in due.tuples().all()]
    if claimed:
        await session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id.in_([d.id for d, _ in claimed]))
            .values(next_attempt_at=func.now() + lease, updated_at=func.now())
            .execution_options(synchronize_session=False)
        )
    return claimed


async def get_delivery_for_update(
    session: AsyncSession, delivery_id: uuid.UUID
) -> WebhookDelivery | None:
    result = await session.execute(
        select(WebhookDelivery).where(WebhookDelivery.id == delivery_id).with_for_update()
    )
    return result.scalar_one_or_none()


async def settle_delivery(
    session: AsyncSession,
    delivery_id: uuid.UUID,
    *,
    status: str,
    attempt_count: int,
    status_code: int | None,
    retry_in: timedelta | None,
) -> None:
    await session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id)
        .values(
            status=status,
            attempt_count=attempt_count,
            last_status_code=status_code,
            next_attempt_at=None if retry_in is None else func.now() + retry_in,
            updated_at=func.now(),
        )
        .execution_options(synchronize_session=False)
    )


async def record_endpoint_result(
    session: AsyncSession, webhook_id: uuid.UUID, *, success: bool, error: str | None
) -> None:
    values: dict[str, Any] = {"last_used_at": func.now(), "updated_at": func.now()}
    if success:
        values |= {"consecutive_failures": 0, "last_error": None}
    else:
        values |= {
            "consecutive_failures": WebhookConfiguration.consecutive_failures + 1,
            "last_error": error,
        }
    await session.execute(
        update(WebhookConfiguration)
        .where(WebhookConfiguration.id == webhook_id)
        .values(**values)
        .execution_options(synchronize_session=False)
    )


async def list_attempts(
    session: AsyncSession, *, webhook_id: uuid.UUID, limit: int, after: Keyset | None
) -> Sequence[WebhookLog]:
    query = select(WebhookLog).where(WebhookLog.webhook_id == webhook_id)
    if after is not None:
        query = query.where(tuple_(WebhookLog.sent_at, WebhookLog.id) < tuple_(*after))
    query = query.order_by(WebhookLog.sent_at.desc(), WebhookLog.id.desc()).limit(limit + 1)
    return (await session.execute(query)).scalars().all()
