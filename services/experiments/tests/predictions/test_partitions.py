"""Monthly partitions for real: made ahead, rows routed by time, old months dropped (with their
rollups), idempotent, one replica at a time."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta

from runyard.experiments.main import create_app
from runyard.experiments.predictions import partitions
from runyard.shared.testing import running_app
from services.experiments.tests.experiments_helpers import fetch
from services.experiments.tests.predictions.conftest import url


async def children(db) -> list[str]:
    rows = await fetch(
        db,
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'experiments.predictions'::regclass ORDER BY 1",
    )
    return [r["relname"] for r in rows]


def test_month_arithmetic() -> None:
    assert partitions.add_months(date(2026, 11, 1), 3) == date(2027, 2, 1)
    assert partitions.add_months(date(2026, 1, 1), -1) == date(2025, 12, 1)
    assert partitions.add_months(date(2026, 1, 1), -36) == date(2023, 1, 1)
    assert partitions.partition_name(date(2027, 2, 1)) == "predictions_2027_02"
    now = datetime(2026, 12, 6, 13, 0, tzinfo=UTC)
    assert partitions.oldest_kept(now, 12) == date(2025, 12, 1)


async def test_maintain_makes_ahead_drops_old_and_is_idempotent(sessionmaker, db) -> None:
    now = datetime(2026, 12, 6, 13, 0, tzinfo=UTC)
    assert await children(db) == []
    async with sessionmaker() as session, session.begin():
        done = await partitions.maintain(session, now=now, months_ahead=3, retention_months=2)
    assert done.created == [date(2026, 12, 1), date(2027, 1, 1), date(2027, 2, 1), date(2027, 3, 1)]
    expected = [
        "predictions_2026_12",
        "predictions_2027_01",
        "predictions_2027_02",
        "predictions_2027_03",
    ]
    assert await children(db) == expected
    async with sessionmaker() as session, session.begin():
        again = await partitions.maintain(session, now=now, months_ahead=3, retention_months=2)
    assert (again.created, again.dropped) == ([], [])

    # older months (made on demand, as a request would) are dropped past the retention
    async with sessionmaker() as session, session.begin():
        made = await partitions.ensure(session, [date(2026, 9, 1), date(2026, 10, 1)])
    assert made == [date(2026, 9, 1), date(2026, 10, 1)]
    async with sessionmaker() as session, session.begin():
        done = await partitions.maintain(session, now=now, months_ahead=3, retention_months=2)
    assert done.dropped == [date(2026, 9, 1)]
    assert "predictions_2026_09" not in await children(db)
    assert "predictions_2026_10" in await children(db)


async def test_a_second_replica_skips_while_one_holds_the_lock(sessionmaker, db) -> None:
    now = datetime(2026, 12, 6, tzinfo=UTC)
    async with sessionmaker() as first, first.begin():
        held = await partitions.maintain(first, now=now, months_ahead=1, retention_months=1)
        assert held.ran
        async with sessionmaker() as second, second.begin():
            skipped = await partitions.maintain(second, now=now, months_ahead=1, retention_months=1)
        assert not skipped.ran
    assert len(await children(db)) == 2


async def test_rows_are_routed_to_their_month_and_dropped_with_it(
    client, db, sessionmaker, alice, new_version
) -> None:
    version = await new_version(alice.id)
    now = datetime.now(UTC)
    this_month = partitions.month_of(now)
    last_month = partitions.add_months(this_month, -1)
    in_last = partitions.month_start(last_month) + timedelta(days=3)
    rows = [
        {"input": 1, "latency_ms": 1, "time": in_last.isoformat()},
        {"input": 2, "latency_ms": 1, "time": in_last.isoformat()},
        {"input": 3, "latency_ms": 1},
    ]
    response = await client.post(url(version), json={"predictions": rows}, headers=alice.headers)
    assert response.status_code == 201, response.text
    # the request made both partitions
    routed = await fetch(
        db,
        "SELECT tableoid::regclass::text AS part, count(*) AS n FROM experiments.predictions "
        "GROUP BY 1 ORDER BY 1",
    )
    assert {r["part"]: r["n"] for r in routed} == {
        f"experiments.{partitions.partition_name(last_month)}": 2,
        f"experiments.{partitions.partition_name(this_month)}": 1,
    }
    rollups = await fetch(db, "SELECT min(start) AS s FROM experiments.prediction_rollups")
    assert rollups[0]["s"] < partitions.month_start(this_month)

    # a month later, with one month kept: last month's partition and rollups go
    async with sessionmaker() as session, session.begin():
        done = await partitions.maintain(
            session,
            now=partitions.month_start(partitions.add_months(this_month, 1)),
            months_ahead=1,
            retention_months=1,
        )
    assert last_month in done.dropped
    assert partitions.partition_name(last_month) not in await children(db)
    left = await fetch(db, "SELECT count(*) AS n FROM experiments.predictions")
    assert left[0]["n"] == 1
    rollups = await fetch(db, "SELECT min(start) AS s FROM experiments.prediction_rollups")
    assert rollups[0]["s"] >= partitions.month_start(this_month)


async def test_the_worker_makes_the_partitions_when_the_service_starts(settings, db) -> None:
    """The ``prediction-partitions`` worker is registered and runs at start (so does the
    ``prediction-drift`` one, with nothing to check)."""
    with_workers = settings.model_copy(update={"run_workers": True, "predictions_months_ahead": 2})
    async with running_app(create_app(with_workers)):
        for _ in range(100):
            if len(await children(db)) == 3:
                break
            await asyncio.sleep(0.1)
    this_month = partitions.month_of(datetime.now(UTC))
    assert await children(db) == [
        partitions.partition_name(partitions.add_months(this_month, i)) for i in range(3)
    ]
