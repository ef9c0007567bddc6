"""Every query of the webhooks service."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    case,
    delete,
    func,
    literal,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from runyard.webhooks.models import (
    NotificationPreference,
    WebhookConfiguration,
    WebhookDelivery,
    WebhookLog,
)

Keyset = tuple[datetime, uuid.UUID]


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


# --- preferences read model -----------------------------------------------------------------


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
    table = NotificationPreference.__table__
    stmt = insert(table).values(
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
        where=table.c.event_time <= stmt.excluded.event_time,
    ).returning(table.c.user_id)
    return (await session.execute(upsert)).first() is not None


async def preference_for(
    session: AsyncSession, user_id: uuid.UUID, event_type: str
) -> NotificationPreference | None:
    return await session.get(NotificationPreference, (user_id, event_type))


# --- claiming and settling deliveries --------------------------------------------------------


def effective_rate(slack_rate: float) -> ColumnElement[Any]:
    """Requests per second allowed to an endpoint (SQL): its setting, else the Slack default
    for Slack endpoints, else NULL (unlimited)."""
    return func.coalesce(
        WebhookConfiguration.settings["rate_limit_per_second"].as_float(),
        case((WebhookConfiguration.provider_type == "slack", literal(slack_rate)), else_=None),
    )


async def claim_due_deliveries(
    session: AsyncSession,
    *,
    limit: int,
    lease: timedelta,
    slack_rate: float,
) -> Sequence[tuple[WebhookDelivery, WebhookConfiguration]]:
    """Lock due deliveries of active endpoints (skipping ones another worker holds) and push
    their ``next_attempt_at`` past the lease, so a worker that dies mid-attempt is retried.

    Rate limits are durable: an endpoint with a limit of r/s gets at most max(1, floor(r))
    deliveries per claim, and only when its ``next_send_at`` has passed; the claim moves
    ``next_send_at`` forward by (claimed / r) seconds. The others stay due for a later pass.
    """
    now = func.now()
    rate = effective_rate(slack_rate)
    scan = (
        select(
            WebhookDelivery.id,
            WebhookDelivery.webhook_id,
            WebhookDelivery.next_attempt_at,
            rate.label("rate"),
        )
        .join(WebhookConfiguration, WebhookConfiguration.id == WebhookDelivery.webhook_id)
        .where(
            WebhookDelivery.status == "pending",
            WebhookDelivery.next_attempt_at <= now,
            WebhookConfiguration.is_active.is_(True),
            or_(
                WebhookConfiguration.next_send_at.is_(None),
                WebhookConfiguration.next_send_at <= now,
            ),
        )
        .order_by(WebhookDelivery.next_attempt_at)
        .limit(limit * 10)
        .subquery()
    )
    ranked = select(
        scan.c.id,
        scan.c.rate,
        func.row_number()
        .over(partition_by=scan.c.webhook_id, order_by=(scan.c.next_attempt_at, scan.c.id))
        .label("n"),
    ).subquery()
    eligible = select(ranked.c.id).where(
        or_(ranked.c.rate.is_(None), ranked.c.n <= func.greatest(1, func.floor(ranked.c.rate)))
    )
    due = await session.execute(
        select(WebhookDelivery, WebhookConfiguration)
        .join(WebhookConfiguration, WebhookConfiguration.id == WebhookDelivery.webhook_id)
        .where(
            WebhookDelivery.id.in_(eligible),
            WebhookDelivery.status == "pending",
            WebhookDelivery.next_attempt_at <= now,
        )
        .order_by(WebhookDelivery.next_attempt_at)
        .limit(limit)
        .with_for_update(of=WebhookDelivery, skip_locked=True)
    )
    claimed = [(d, c) for d, c in due.tuples().all()]
    limited: dict[uuid.UUID, int] = {}
    for _d, c in claimed:
        if endpoint_rate(c, slack_rate) is not None:
            limited[c.id] = limited.get(c.id, 0) + 1
    lost: set[uuid.UUID] = set()
    for webhook_id, count in limited.items():
        config = next(c for _d, c in claimed if c.id == webhook_id)
        per_second = endpoint_rate(config, slack_rate)
        assert per_second is not None
        won = await session.execute(
            update(WebhookConfiguration)
            .where(
                WebhookConfiguration.id == webhook_id,
                or_(
                    WebhookConfiguration.next_send_at.is_(None),
                    WebhookConfiguration.next_send_at <= now,
                ),
            )
            .values(next_send_at=now + timedelta(seconds=count / per_second))
            .returning(WebhookConfiguration.id)
            .execution_options(synchronize_session=False)
        )
        if won.first() is None:  # another worker took this endpoint's slot
            lost.add(webhook_id)
    claimed = [(d, c) for d, c in claimed if c.id not in lost]
    if claimed:
        await session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id.in_([d.id for d, _ in claimed]))
            .values(next_attempt_at=now + lease, updated_at=now)
            .execution_options(synchronize_session=False)
        )
    return claimed


def endpoint_rate(config: WebhookConfiguration, slack_rate: float) -> float | None:
    """The Python twin of ``effective_rate``."""
    configured = (config.settings or {}).get("rate_limit_per_second")
    if configured is not None:
        return float(configured)
    return slack_rate if config.provider_type == "slack" else None


async def lock_deliveries(
    session: AsyncSession, delivery_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, tuple[str, int]]:
    """Lock the deliveries (in id order: no deadlock between recorders); id -> (status,
    attempt_count). Missing ids were deleted with their endpoint."""
    if not delivery_ids:
        return {}
    rows = await session.execute(
        select(WebhookDelivery.id, WebhookDelivery.status, WebhookDelivery.attempt_count)
        .where(WebhookDelivery.id.in_(delivery_ids))
        .order_by(WebhookDelivery.id)
        .with_for_update()
    )
    return {row.id: (row.status, row.attempt_count) for row in rows}


async def settle_deliveries(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Bulk UPDATE by primary key (one statement, executed for every row)."""
    if rows:
        await session.execute(update(WebhookDelivery), rows)


@dataclass(frozen=True)
class EndpointState:
    consecutive_failures: int
    failing_since: datetime | None
    is_active: bool


async def record_endpoint_results(
    session: AsyncSession,
    webhook_id: uuid.UUID,
    *,
    reset: bool,
    failures: int,
    last_error: str | None,
    hold_until: datetime | None = None,
) -> EndpointState | None:
    """Count attempts on the endpoint: ``reset`` (a success) ends the run of failures, then
    ``failures`` more extend it. ``hold_until`` (after a 429) keeps every request back."""
    values: dict[str, Any] = {"last_used_at": func.now(), "updated_at": func.now()}
    if reset:
        values |= {
            "consecutive_failures": failures,
            "failing_since": func.now() if failures else None,
            "last_error": last_error,
        }
    elif failures:
        values |= {
            "consecutive_failures": WebhookConfiguration.consecutive_failures + failures,
            "failing_since": func.coalesce(WebhookConfiguration.failing_since, func.now()),
            "last_error": last_error,
        }
    if hold_until is not None:
        values["next_send_at"] = func.greatest(
            func.coalesce(WebhookConfiguration.next_send_at, hold_until), hold_until
        )
    row = (
        await session.execute(
            update(WebhookConfiguration)
            .where(WebhookConfiguration.id == webhook_id)
            .values(**values)
            .returning(
                WebhookConfiguration.consecutive_failures,
                WebhookConfiguration.failing_since,
                WebhookConfiguration.is_active,
            )
            .execution_options(synchronize_session=False)
        )
    ).first()
    return None if row is None else EndpointState(*row)


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


# --- deliveries API --------------------------------------------------------------------------


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
    if after is not None:
        query = query.where(tuple_(WebhookDelivery.created_at, WebhookDelivery.id) < tuple_(*after))
    query = query.order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc()).limit(
        limit + 1
    )
    return (await session.execute(query)).scalars().all()


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
    if after is not None:
        query = query.where(tuple_(WebhookLog.sent_at, WebhookLog.id) < tuple_(*after))
    query = query.order_by(WebhookLog.sent_at.desc(), WebhookLog.id.desc()).limit(limit + 1)
    return (await session.execute(query)).scalars().all()
