"""The monthly partitions of ``experiments.predictions``.

A partition ``predictions_YYYY_MM`` holds the UTC month ``[YYYY-MM-01, next month)``. There is
no default partition (a row outside every partition would have to be moved out of it before
that month's partition could be made): instead a request refuses times outside what is kept
(422, ``service.check_times``), and partitions exist for every month a request may write to:

- the ``prediction-partitions`` worker (``maintain``) makes the current month and
  ``months_ahead`` months after it, and drops the months older than ``retention_months`` before
  the current one (with the rollups of those months, and the batch ids stored before the
  first kept month);
- a request whose rows fall in a month this process has not seen a partition of makes it
  (``ensure``), so a fresh database takes predictions before the worker has run.

Making or dropping a partition takes the transaction-scoped advisory lock ``PARTITION_LOCK``
first, so two replicas (or a request and a worker) never race on the same DDL: the second one
waits and then finds the partition made. The worker only ``try``-locks: a replica that finds
another at work skips the pass.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from runyard.experiments.models import SCHEMA

#: the advisory lock of partition DDL: "PRDP"
PARTITION_LOCK = 0x50524450
PARENT = "predictions"
NAME = re.compile(r"^predictions_(\d{4})_(\d{2})$")

#: per database (engine): the months this process knows a partition of (less what it drops)
_known: weakref.WeakKeyDictionary[Any, set[date]] = weakref.WeakKeyDictionary()


def known(session: AsyncSession) -> set[date]:
    return _known.setdefault(session.get_bind(), set())


def month_of(moment: datetime) -> date:
    moment = moment.astimezone(UTC)
    return date(moment.year, moment.month, 1)


def add_months(month: date, count: int) -> date:
    index = month.year * 12 + month.month - 1 + count
    return date(index // 12, index % 12 + 1, 1)


def month_start(month: date) -> datetime:
    return datetime(month.year, month.month, 1, tzinfo=UTC)


def partition_name(month: date) -> str:
    return f"{PARENT}_{month.year:04d}_{month.month:02d}"


def oldest_kept(now: datetime, retention_months: int) -> date:
    """The first month kept: the current one and ``retention_months`` before it."""
    return add_months(month_of(now), -retention_months)


async def existing(session: AsyncSession) -> list[date]:
    """The months that have a partition, oldest first (from ``pg_inherits``)."""
    rows = await session.execute(
        text(
            "SELECT c.relname FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent "
            "JOIN pg_namespace n ON n.oid = p.relnamespace "
            "WHERE n.nspname = :schema AND p.relname = :parent"
        ),
        {"schema": SCHEMA, "parent": PARENT},
    )
    months = []
    for (name,) in rows:
        match = NAME.match(name)
        if match:
            months.append(date(int(match[1]), int(match[2]), 1))
    return sorted(months)


async def _lock(session: AsyncSession, *, wait: bool) -> bool:
    if wait:
        await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PARTITION_LOCK})
        return True
    got = await session.scalar(
        text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": PARTITION_LOCK}
    )
    return bool(got)


async def _create(session: AsyncSession, month: date) -> None:
    start = month_start(month).isoformat()
    end = month_start(add_months(month, 1)).isoformat()
    await session.execute(
        text(
            f'CREATE TABLE IF NOT EXISTS {SCHEMA}."{partition_name(month)}" '
            f"PARTITION OF {SCHEMA}.{PARENT} FOR VALUES FROM ('{start}') TO ('{end}')"
        )
    )


async def ensure(session: AsyncSession, months: Iterable[date]) -> list[date]:
    """Make the partitions of ``months`` that do not exist yet (in the caller's transaction);
    returns those it made."""
    cache = known(session)
    missing = sorted(set(months) - cache)
    if not missing:
        return []
    await _lock(session, wait=True)
    have = set(await existing(session))
    made = [m for m in missing if m not in have]
    for month in made:
        await _create(session, month)
    cache.update(missing)
    return made


@dataclass(frozen=True)
class Maintenance:
    created: list[date]
    dropped: list[date]
    #: False: another replica held the lock, nothing was done
    ran: bool = True


async def maintain(
    session: AsyncSession, *, now: datetime, months_ahead: int, retention_months: int
) -> Maintenance:
    """Make the current month's partition and ``months_ahead`` after it; drop partitions (and
    rollups) of months before ``oldest_kept``. Idempotent; skips if another replica is at it."""
    if not await _lock(session, wait=False):
        return Maintenance([], [], ran=False)
    have = await existing(session)
    current = month_of(now)
    wanted = [add_months(current, i) for i in range(months_ahead + 1)]
    created = [m for m in wanted if m not in have]
    for month in created:
        await _create(session, month)
    first_kept = oldest_kept(now, retention_months)
    dropped = [m for m in have if m < first_kept]
    for month in dropped:
        await session.execute(text(f'DROP TABLE IF EXISTS {SCHEMA}."{partition_name(month)}"'))
    if dropped:
        await session.execute(
            text(f"DELETE FROM {SCHEMA}.prediction_rollups WHERE start < :cutoff"),  # noqa: S608
            {"cutoff": month_start(first_kept)},
        )
    # the batch ids (Idempotency-Key) go with the months kept (by when they were stored)
    await session.execute(
        text(f"DELETE FROM {SCHEMA}.prediction_batches WHERE created_at < :cutoff"),  # noqa: S608
        {"cutoff": month_start(first_kept)},
    )
    cache = known(session)
    cache.difference_update(dropped)
    cache.update(wanted)
    return Maintenance(created, dropped)
