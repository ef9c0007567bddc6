"""Every query of the gateway: admin reads and the metrics rollup."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, delete, select, text, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from runyard.gateway.models import api_metrics_summary, api_request_logs, system_logs
from runyard.shared.pagination import cut, decode_cursor

#: A page of rows (as mappings) and the cursor of the next page, if any.
Rows = tuple[list[dict[str, Any]], str | None]

REQUEST_LOGS = "gateway.request-logs"
AUDIT_LOG = "gateway.audit-log"
METRICS = "gateway.metrics"


async def _page_by_id(
    session: AsyncSession, query: Select[Any], table: Any, kind: str, limit: int, cursor: str | None
) -> Rows:
    """Newest (highest id) first."""
    after = decode_cursor(cursor, kind, int)
    if after is not None:
        query = query.where(table.c.id < after[0])
    query = query.order_by(table.c.id.desc()).limit(limit + 1)
    rows = [dict(r) for r in (await session.execute(query)).mappings()]
    return cut(rows, limit, kind, lambda row: (row["id"],))


async def list_request_logs(
    session: AsyncSession,
    *,
    limit: int,
    cursor: str | None,
    method: str | None = None,
    status: int | None = None,
    errors_only: bool = False,
    service: str | None = None,
    path_prefix: str | None = None,
    user_id: uuid.UUID | None = None,
    api_key_id: uuid.UUID | None = None,
    request_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Rows:
    t = api_request_logs
    query = select(t)
    conditions = []
    if method:
        conditions.append(t.c.method == method.upper())
    if status is not None:
        conditions.append(t.c.status_code == status)
    if errors_only:
        conditions.append(t.c.status_code >= 400)
    if service:
        conditions.append(t.c.service == service)
    if path_prefix:
        escaped = path_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        conditions.append(t.c.endpoint.like(escaped + "%", escape="\\"))
    if user_id:
        conditions.append(t.c.user_id == user_id)
    if api_key_id:
        conditions.append(t.c.api_key_id == api_key_id)
    if request_id:
        conditions.append(t.c.request_id == request_id)
    if since:
        conditions.append(t.c.request_time >= since)
    if until:
        conditions.append(t.c.request_time < until)
    if conditions:
        query = query.where(and_(*conditions))
    return await _page_by_id(session, query, t, REQUEST_LOGS, limit, cursor)


async def list_audit_entries(
    session: AsyncSession,
    *,
    limit: int,
    cursor: str | None,
    user_id: uuid.UUID | None = None,
    action: str | None = None,
    status: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Rows:
    t = system_logs
    query = select(t)
    if user_id:
        query = query.where(t.c.user_id == user_id)
    if action:
        query = query.where(t.c.action.startswith(action, autoescape=True))
    if status:
        query = query.where(t.c.status == status)
    if since:
        query = query.where(t.c.created_at >= since)
    if until:
        query = query.where(t.c.created_at < until)
    return await _page_by_id(session, query, t, AUDIT_LOG, limit, cursor)


async def list_metrics(
    session: AsyncSession,
    *,
    limit: int,
    cursor: str | None,
    aggregation: str,
    endpoint: str | None = None,
    method: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Rows:
    """Newest period first."""
    t = api_metrics_summary
    query = select(t).where(t.c.aggregation_type == aggregation)
    if endpoint:
        query = query.where(t.c.endpoint == endpoint)
    if method:
        query = query.where(t.c.method == method.upper())
    if since:
        query = query.where(t.c.period_start >= since)
    if until:
        query = query.where(t.c.period_start < until)
    after = decode_cursor(cursor, METRICS, datetime, int)
    if after is not None:
        query = query.where(tuple_(t.c.period_start, t.c.id) < tuple_(*after))
    query = query.order_by(t.c.period_start.desc(), t.c.id.desc()).limit(limit + 1)
    rows = [dict(r) for r in (await session.execute(query)).mappings()]
    return cut(rows, limit, METRICS, lambda row: (row["period_start"], row["id"]))


#: One statement per period kind: every (period, method, route) group and one ``*``/``*`` row
#: per period, recomputed from the logs and upserted, so running it twice changes nothing.
ROLLUP = text(
    """
    INSERT INTO gateway.api_metrics_summary AS s (
        aggregation_type, period_start, period_end, method, endpoint,
        total_requests, successful_requests, failed_requests, server_errors, error_rate,
        requests_per_second, avg_response_time_ms,
        p50_response_time_ms, p95_response_time_ms, p99_response_time_ms)
    SELECT CAST(:kind AS text), g.period_start,
           g.period_start + make_interval(secs => CAST(:seconds AS float8)),
           coalesce(g.method, '*'), coalesce(g.route, '*'),
           g.total, g.total - g.failed, g.failed, g.server_errors,
           g.failed::float8 / g.total, g.total / CAST(:seconds AS float8), g.avg_ms,
           g.pct[1], g.pct[2], g.pct[3]
    FROM (
        SELECT l.period_start, l.method, l.route,
               count(*) AS total,
               count(*) FILTER (WHERE status_code >= 400) AS failed,
               count(*) FILTER (WHERE status_code >= 500) AS server_errors,
               avg(response_time_ms) AS avg_ms,
               percentile_cont(ARRAY[0.5, 0.95, 0.99])
                   WITHIN GROUP (ORDER BY response_time_ms) AS pct
        FROM (
            SELECT date_trunc(CAST(:kind AS text), request_time, 'UTC') AS period_start,
                   method, route, status_code, response_time_ms
            FROM gateway.api_request_logs
            WHERE request_time >= :since AND request_time < :until
        ) AS l
        GROUP BY GROUPING SETS ((l.period_start, l.method, l.route), (l.period_start))
    ) AS g
    ON CONFLICT (aggregation_type, period_start, method, endpoint) DO UPDATE SET
        period_end = excluded.period_end,
        total_requests = excluded.total_requests,
        successful_requests = excluded.successful_requests,
        failed_requests = excluded.failed_requests,
        server_errors = excluded.server_errors,
        error_rate = excluded.error_rate,
        requests_per_second = excluded.requests_per_second,
        avg_response_time_ms = excluded.avg_response_time_ms,
        p50_response_time_ms = excluded.p50_response_time_ms,
        p95_response_time_ms = excluded.p95_response_time_ms,
        p99_response_time_ms = excluded.p99_response_time_ms,
        updated_at = now()
    """
)


async def rollup(conn: AsyncConnection, *, kind: str, since: datetime, until: datetime) -> int:
    seconds = 60 if kind == "minute" else 3600
    result = await conn.execute(
        ROLLUP, {"kind": kind, "seconds": seconds, "since": since, "until": until}
    )
    return result.rowcount or 0


async def latest_period(conn: AsyncConnection, kind: str) -> datetime | None:
    t = api_metrics_summary
    value: datetime | None = (
        await conn.execute(
            select(t.c.period_start)
            .where(t.c.aggregation_type == kind)
            .order_by(t.c.period_start.desc())
            .limit(1)
        )
    ).scalar()
    return value


async def earliest_log(conn: AsyncConnection) -> datetime | None:
    t = api_request_logs
    value: datetime | None = (
        await conn.execute(select(t.c.request_time).order_by(t.c.request_time).limit(1))
    ).scalar()
    return value


async def prune_logs(conn: AsyncConnection, *, before: datetime, batch: int = 5000) -> int:
    t = api_request_logs
    doomed = select(t.c.id).where(t.c.request_time < before).limit(batch).scalar_subquery()
    result = await conn.execute(delete(t).where(t.c.id.in_(doomed)))
    return result.rowcount or 0
