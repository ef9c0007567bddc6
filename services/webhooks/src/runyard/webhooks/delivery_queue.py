"""The deliveries as a durable queue: claim due ones (leases, per-endpoint rate limits), lock
and settle them after their attempts, and count the outcomes on their endpoints."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import RowMapping, func, select, text, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from runyard.webhooks import delivery_events
from runyard.webhooks.models import WebhookConfiguration, WebhookDelivery

#: Due deliveries of active endpoints that may send now, locked (skipping rows another worker
#: holds), with what an attempt needs of the delivery and its endpoint. Of an endpoint with a
#: rate limit of r/s, at most max(1, floor(r)) per claim: the rest stay due for a later one.
#: One prepared statement (asyncpg caches it), no ORM entities.
CLAIM = text(
    "WITH scan AS ("
    " SELECT d.id, d.webhook_id, d.next_attempt_at,"
    " coalesce(CAST(c.settings ->> 'rate_limit_per_second' AS float),"
    " CASE WHEN c.provider_type = 'slack' THEN CAST(:slack_rate AS float) END) AS rate"
    " FROM webhooks.webhook_deliveries d"
    " JOIN webhooks.webhook_configurations c ON c.id = d.webhook_id"
    " WHERE d.status = 'pending' AND d.next_attempt_at <= now() AND c.is_active"
    " AND (c.next_send_at IS NULL OR c.next_send_at <= now())"
    " ORDER BY d.next_attempt_at LIMIT :scan),"
    " eligible AS (SELECT id, rate FROM (SELECT id, rate, row_number() OVER ("
    "PARTITION BY webhook_id ORDER BY next_attempt_at, id) AS n FROM scan) ranked"
    " WHERE rate IS NULL OR n <= greatest(1, floor(rate)))"
    " SELECT d.id AS delivery_id, d.event_id, d.event_type, d.payload, d.attempt_count,"
    " d.trigger_type, d.automatic_retries, e.rate, c.id AS webhook_id, c.owner_id, c.url,"
    " c.provider_type, c.secret_encrypted, c.previous_secret_encrypted,"
    " c.previous_secret_expires_at, c.settings AS endpoint_settings"
    " FROM webhooks.webhook_deliveries d JOIN eligible e ON e.id = d.id"
    " JOIN webhooks.webhook_configurations c ON c.id = d.webhook_id"
    " WHERE d.status = 'pending' AND d.next_attempt_at <= now()"
    " ORDER BY d.next_attempt_at LIMIT :limit FOR UPDATE OF d SKIP LOCKED"
).columns(payload=JSONB, endpoint_settings=JSONB)
#: Takes an endpoint's rate-limit slot for ``count`` requests, unless another worker has.
TAKE_SLOT = text(
    "UPDATE webhooks.webhook_configurations"
    " SET next_send_at = now() + make_interval(secs => :seconds)"
    " WHERE id = :id AND (next_send_at IS NULL OR next_send_at <= now()) RETURNING id"
)
#: Pushes the claimed deliveries' ``next_attempt_at`` past the lease.
LEASE = text(
    "UPDATE webhooks.webhook_deliveries"
    " SET next_attempt_at = now() + make_interval(secs => :lease_s), updated_at = now()"
    " WHERE id = ANY(CAST(:ids AS uuid[]))"
)


async def claim_due_deliveries(
    session: AsyncSession,
    *,
    limit: int,
    lease: timedelta,
    slack_rate: float,
) -> list[RowMapping]:
    """Lock due deliveries of active endpoints (skipping ones another worker holds) and push
    their ``next_attempt_at`` past the lease, so a worker that dies mid-attempt is retried.
    Rows of the delivery and its endpoint (``CLAIM``'s columns).

    Rate limits are durable: an endpoint with a limit of r/s gets at most max(1, floor(r))
    deliveries per claim, and only when its ``next_send_at`` has passed; the claim moves
    ``next_send_at`` forward by (claimed / r) seconds. The others stay due for a later pass.
    """
    rows = list(
        (
            await session.execute(
                CLAIM, {"slack_rate": slack_rate, "scan": limit * 10, "limit": limit}
            )
        ).mappings()
    )
    limited: dict[uuid.UUID, tuple[int, float]] = {}
    for row in rows:
        if row["rate"] is not None:
            count, rate = limited.get(row["webhook_id"], (0, row["rate"]))
            limited[row["webhook_id"]] = (count + 1, rate)
    lost: set[uuid.UUID] = set()
    for webhook_id, (count, per_second) in limited.items():
        won = await session.execute(TAKE_SLOT, {"id": webhook_id, "seconds": count / per_second})
        if won.first() is None:  # another worker took this endpoint's slot
            lost.add(webhook_id)
    rows = [row for row in rows if row["webhook_id"] not in lost]
    if rows:
        await session.execute(
            LEASE, {"ids": [row["delivery_id"] for row in rows], "lease_s": lease.total_seconds()}
        )
    return rows


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


#: Settles deliveries after their attempts: one statement for a batch (arrays of the fields).
SETTLE_SQL = (
    "UPDATE webhooks.webhook_deliveries d SET status = s.status,"
    " attempt_count = s.attempt_count, last_status_code = s.last_status_code,"
    " last_error = s.last_error, next_attempt_at = s.next_attempt_at,"
    " last_attempt_at = :at, trigger_type = 'event', updated_at = :at"
    " FROM unnest(CAST(:ids AS uuid[]), CAST(:statuses AS text[]), CAST(:attempts AS int[]),"
    " CAST(:codes AS int[]), CAST(:errors AS text[]), CAST(:next_at AS timestamptz[]))"
    " AS s(id, status, attempt_count, last_status_code, last_error, next_attempt_at)"
    " WHERE d.id = s.id"
)
SETTLE = text(SETTLE_SQL)
#: ``SETTLE`` and the batch's pending ``webhook.deliveries_updated`` (``delivery_events``) in
#: one statement: one round trip per batch, as before the events existed.
SETTLE_AND_NOTE = text(
    f"WITH settled AS ({SETTLE_SQL} RETURNING d.id),"  # noqa: S608 (constants, no input)
    f" noted AS ({delivery_events.NOTE_SQL} RETURNING p.webhook_id)"
    " SELECT (SELECT count(*) FROM settled), (SELECT count(*) FROM noted)"
)


async def settle_deliveries(
    session: AsyncSession,
    rows: list[dict[str, Any]],
    *,
    at: datetime,
    windows: dict[uuid.UUID, delivery_events.Window] | None = None,
) -> None:
    """Rows of (id, status, attempt_count, last_status_code, last_error, next_attempt_at),
    attempted ``at``, and the batch's outcomes per endpoint (``windows``) added to their
    pending events: one statement."""
    if not rows and not windows:
        return
    params = {
        "ids": [r["id"] for r in rows],
        "statuses": [r["status"] for r in rows],
        "attempts": [r["attempt_count"] for r in rows],
        "codes": [r["last_status_code"] for r in rows],
        "errors": [r["last_error"] for r in rows],
        "next_at": [r["next_attempt_at"] for r in rows],
        "at": at,
    }
    if windows:
        # the two parts' parameters never share a name (``note_...``)
        await session.execute(SETTLE_AND_NOTE, params | delivery_events.note_params(windows))
    else:
        await session.execute(SETTLE, params)


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
