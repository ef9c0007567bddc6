"""Background work: roll request logs up into per-minute and per-hour summaries, prune old logs.

Resumable and idempotent: each pass recomputes every period from the latest summarised one
(minus a grace period for log rows that arrive late, they are written in batches) up to now
and upserts them. A restart continues where the summaries end. Several gateway instances may
run it: a transaction-scoped advisory lock lets one pass run at a time.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from runyard.gateway import repository
from runyard.gateway.context import GatewayRuntime
from runyard.shared.logging import get_logger

log = get_logger(__name__)

PERIODS = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1)}
#: Late log rows (batched writes, clock steps) still land in their period's summary.
GRACE = timedelta(minutes=2)
#: At most this much history is recomputed in one pass (catching up after a long stop).
MAX_SPAN = timedelta(days=1)
_LOCK = text("SELECT pg_try_advisory_xact_lock(hashtext('runyard.gateway.metrics_rollup'))")


def _floor(moment: datetime, kind: str) -> datetime:
    if kind == "minute":
        return moment.replace(second=0, microsecond=0)
    return moment.replace(minute=0, second=0, microsecond=0)


async def rollup_once(engine: AsyncEngine, *, now: datetime | None = None) -> dict[str, int]:
    """One pass over both period kinds; returns the summary rows written per kind."""
    now = now or datetime.now(UTC)
    written: dict[str, int] = {}
    async with engine.begin() as conn:
        if not (await conn.execute(_LOCK)).scalar():
            return written  # another instance is rolling up right now
        for kind in PERIODS:
            latest = await repository.latest_period(conn, kind)
            if latest is None:
                latest = await repository.earliest_log(conn)
                if latest is None:
                    continue
            since = _floor(min(latest, now - GRACE), kind)
            since = max(since, _floor(now - MAX_SPAN, kind))
            written[kind] = await repository.rollup(conn, kind=kind, since=since, until=now)
    return written


async def prune_once(engine: AsyncEngine, *, retention: timedelta) -> int:
    total = 0
    while True:
        async with engine.begin() as conn:
            deleted = await repository.prune_logs(conn, before=datetime.now(UTC) - retention)
        total += deleted
        if deleted == 0:
            return total


async def metrics_rollup(runtime: GatewayRuntime) -> None:
    """Worker: ``rollup_once`` every ``GATEWAY_METRICS_ROLLUP_INTERVAL_S``, pruning hourly."""
    settings = runtime.settings
    retention = timedelta(days=settings.request_log_retention_days)
    last_prune = datetime.min.replace(tzinfo=UTC)
    while True:
        written = await rollup_once(runtime.engine)
        log.debug("gateway.metrics.rolled_up", **written)
        if datetime.now(UTC) - last_prune > timedelta(hours=1):
            last_prune = datetime.now(UTC)
            pruned = await prune_once(runtime.engine, retention=retention)
            if pruned:
                log.info("gateway.request_logs.pruned", rows=pruned)
        await asyncio.sleep(settings.metrics_rollup_interval_s)
