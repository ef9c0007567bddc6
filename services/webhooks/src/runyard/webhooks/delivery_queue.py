"""The deliveries as a durable queue: claim due ones (leases, per-endpoint rate limits), lock
and settle them after their attempts, and count the outcomes on their endpoints."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, case, func, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from runyard.webhooks.models import WebhookConfiguration, WebhookDelivery


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
    claimed = [(d, c) for d, c in due.all()]
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
