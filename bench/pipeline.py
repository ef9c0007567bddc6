"""Benchmark: outbox -> relay -> Kafka-protocol broker -> inbox consumer, on real parts.

Writes N events into an outbox (in transactions of --tx-size), runs one relay and one consumer
(inbox insert + a tiny effect per event) and reports:
- relay throughput (events/s from first publish to last row marked),
- end-to-end throughput (events/s from first insert to last effect committed),
- end-to-end latency per event (insert commit -> effect commit) p50/p95/p99.

Usage: uv run python bench/pipeline.py [--events 5000] [--tx-size 50] [--rate 200]
Uses DATABASE_URL / KAFKA_BOOTSTRAP_SERVERS when set, else starts embedded Postgres and Tansu.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import time
import uuid
from typing import Any

from aiokafka import AIOKafkaProducer
from sqlalchemy import text

from runyard.shared.db import asyncpg_dsn, create_engine, create_sessionmaker
from runyard.shared.events import EventPayload, make_event
from runyard.shared.inbox import EventConsumer
from runyard.shared.migrations import create_outbox_and_inbox
from runyard.shared.outbox import OutboxRelay, add_event
from runyard.shared.provision import ensure_database
from runyard.shared.settings import ServiceSettings
from runyard.shared.testing import _with_db, local_infrastructure

SCHEMA = "bench"


class BenchTick(EventPayload):
    event_type = "bench.tick"
    n: int
    written_at: float


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


async def run(
    events: int, tx_size: int, admin_url: str, bootstrap: str, rate: float | None = None
) -> dict[str, Any]:
    name = f"bench_{uuid.uuid4().hex[:8]}"
    await ensure_database(admin_url, name)
    url = _with_db(admin_url, name)
    engine = create_engine(url, pool_size=10)
    async with engine.begin() as conn:
        await conn.execute(text(f"CREATE SCHEMA {SCHEMA}"))
        await conn.run_sync(create_outbox_and_inbox, SCHEMA)
        await conn.execute(
            text(
                f"CREATE TABLE {SCHEMA}.effects (n int PRIMARY KEY, written_at float8, done_at float8)"
            )
        )
    sessionmaker = create_sessionmaker(engine, schema=SCHEMA)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    topic = f"bench.t{uuid.uuid4().hex[:8]}"

    class Tick(EventPayload):
        event_type = topic
        n: int
        written_at: float

    async def effect(session: Any, event: Any, payload: Any) -> None:
        await session.execute(
            text(
                f"INSERT INTO {SCHEMA}.effects VALUES (:n, :w, extract(epoch FROM clock_timestamp()))"
            ),
            {"n": payload.n, "w": payload.written_at},
        )

    # the services' defaults: NOTIFY-woken relay with its fallback poll, a consumer that
    # rests when idle and wakes on the relay's NOTIFY
    defaults = {name: field.default for name, field in ServiceSettings.model_fields.items()}
    relay = OutboxRelay(
        engine=engine,
        producer=producer,
        schema=SCHEMA,
        service="bench",
        batch_size=500,
        poll_interval_s=defaults["outbox_poll_interval_s"],
    )
    consumer = EventConsumer(
        sessionmaker=sessionmaker,
        producer=producer,
        bootstrap_servers=[bootstrap],
        group_id=f"bench-{uuid.uuid4().hex[:6]}",
        schema=SCHEMA,
        service="bench",
        handlers={topic: effect},
        max_records=500,
        fetch_max_wait_ms=defaults["consumer_fetch_max_wait_ms"],
        idle_pause_after_s=defaults["consumer_idle_pause_after_s"],
        idle_check_s=defaults["consumer_idle_check_s"],
        wake_dsn=asyncpg_dsn(url),
    )
    consumer_task = asyncio.create_task(consumer.run())
    relay_task = asyncio.create_task(relay.run())
    # warm-up: one event through the whole path (topic created, partitions assigned) off the clock
    async with sessionmaker() as session, session.begin():
        await add_event(
            session, make_event(Tick(n=-1, written_at=time.time()), source="/b", subject="w")
        )
    async with engine.connect() as conn:
        while not (await conn.execute(text(f"SELECT count(*) FROM {SCHEMA}.effects"))).scalar():
            await asyncio.sleep(0.05)
            await conn.commit()

    started = time.time()
    for start in range(0, events, tx_size):
        if rate:  # paced load: measure latency below saturation
            await asyncio.sleep(max(0.0, started + start / rate - time.time()))
        async with sessionmaker() as session, session.begin():
            for n in range(start, min(start + tx_size, events)):
                # written_at is the insert's own clock; the commit follows within the tx
                await add_event(
                    session,
                    make_event(
                        Tick(n=n, written_at=time.time()), source="/bench", subject=str(n % 64)
                    ),
                )
    write_done = time.time()
    async with engine.connect() as conn:
        while (
            await conn.execute(text(f"SELECT count(*) FROM {SCHEMA}.effects"))
        ).scalar() <= events:  # + the warm-up row
            await asyncio.sleep(0.05)
            await conn.commit()
        rows = (
            await conn.execute(
                text(f"SELECT written_at, done_at FROM {SCHEMA}.effects WHERE n >= 0 ORDER BY n")
            )
        ).all()
    if os.environ.get("BENCH_TRACE"):
        for i in range(0, len(rows), max(1, len(rows) // 30)):
            chunk = rows[i : i + max(1, len(rows) // 30)]
            worst = max((r.done_at - r.written_at) * 1000 for r in chunk)
            print(f"t={chunk[0].written_at - started:6.2f}s worst={worst:8.1f}ms")
    finished = max(r.done_at for r in rows)
    latencies = [(r.done_at - r.written_at) * 1000 for r in rows]
    for task in (relay_task, consumer_task):
        task.cancel()
    await asyncio.gather(relay_task, consumer_task, return_exceptions=True)
    await producer.stop()
    await engine.dispose()
    return {
        "events": events,
        "tx_size": tx_size,
        "offered_rate": rate or "unpaced",
        "write_s": round(write_done - started, 2),
        "end_to_end_events_per_s": round(events / (finished - started), 1),
        "latency_ms_p50": round(percentile(latencies, 0.50), 1),
        "latency_ms_p95": round(percentile(latencies, 0.95), 1),
        "latency_ms_p99": round(percentile(latencies, 0.99), 1),
        "latency_ms_mean": round(statistics.fmean(latencies), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--tx-size", type=int, default=50)
    parser.add_argument("--rate", type=float, default=None, help="events/s to offer (paced)")
    args = parser.parse_args()
    with local_infrastructure() as (admin_url, bootstrap):
        result = asyncio.run(run(args.events, args.tx_size, admin_url, bootstrap, args.rate))
    print(f"machine: {platform.node()} {os.cpu_count()} cores, Python {platform.python_version()}")
    for key, value in result.items():
        print(f"{key:>26}: {value}")


if __name__ == "__main__":
    main()
