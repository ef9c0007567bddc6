"""Benchmark: events on Kafka -> webhooks fan-out consumer -> delivery worker -> HTTP receiver.

Runs the real webhooks service in-process (consumer, delivery worker, outbox relay) against a
real PostgreSQL and a real Kafka-protocol broker, with a local aiohttp receiver on 127.0.0.1.
Publishes N ``experiment.completed`` events for one owner who has --endpoints generic endpoints
and reports:
- deliveries per second (first publish -> last delivery received),
- latency per delivery, from the event's publish to Kafka to its receipt, p50/p95/p99.

Usage: uv run python bench/webhooks_bench.py [--events 2000] [--endpoints 1] [--rate 100]
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

from aiohttp import web
from aiokafka import AIOKafkaProducer

from runyard.shared.contracts.experiments import ExperimentCompleted
from runyard.shared.events import CONTENT_TYPE, make_event
from runyard.shared.migrations import upgrade
from runyard.shared.provision import ensure_database, provision_service, role_url
from runyard.shared.testing import (
    _with_db,
    free_port,
    identity_headers,
    local_infrastructure,
    running_app,
)
from runyard.webhooks.config import Settings
from runyard.webhooks.main import create_app


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


async def start_receiver(
    received: dict[tuple[str, str], float], arrived: asyncio.Event
) -> tuple[web.AppRunner, str]:
    async def handle(request: web.Request) -> web.Response:
        await request.read()
        received[(request.path, request.headers["webhook-id"])] = time.time()
        arrived.set()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


async def provision(admin_url: str) -> str:
    name = f"bench_wh_{uuid.uuid4().hex[:8]}"
    await ensure_database(admin_url, name)
    await provision_service(
        _with_db(admin_url, name),
        schema="webhooks",
        role="runyard_webhooks",
        password="bench",
        database=name,
    )
    url = role_url(admin_url, role="runyard_webhooks", password="bench", database=name)
    await asyncio.to_thread(upgrade, "runyard.webhooks", url)
    return url


async def trace(database_url: str) -> None:
    """Where the time goes: event time -> delivery row -> attempt recorded (ms)."""
    import asyncpg

    from runyard.shared.db import asyncpg_dsn

    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        row = await conn.fetchrow(
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM "
            "d.created_at - (d.payload->>'time')::timestamptz)) * 1000 AS to_row, "
            "percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM "
            "l.sent_at - d.created_at)) * 1000 AS row_to_recorded, "
            "percentile_cont(0.5) WITHIN GROUP (ORDER BY l.duration_ms) AS http_ms "
            "FROM webhooks.webhook_deliveries d JOIN webhooks.webhook_logs l "
            "ON l.delivery_id = d.id"
        )
        print({k: round(v, 1) for k, v in dict(row).items()})
    finally:
        await conn.close()


async def run(
    events: int, endpoints: int, admin_url: str, bootstrap: str, rate: float | None
) -> dict[str, Any]:
    database_url = await provision(admin_url)
    settings = Settings(
        environment="test",
        database_url=database_url,
        kafka_bootstrap_servers=bootstrap,
        allow_private_targets=True,
        log_level="WARNING",
        db_pool_size=20,
        delivery_poll_interval_s=float(os.environ.get("BENCH_POLL_S", "0.5")),
    )
    received: dict[tuple[str, str], float] = {}
    arrived = asyncio.Event()
    runner, base_url = await start_receiver(received, arrived)
    owner = uuid.uuid4()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    published: dict[str, float] = {}

    async def publish(n: int) -> str:
        experiment_id = uuid.uuid4()
        event = make_event(
            ExperimentCompleted(
                experiment_id=experiment_id,
                name=f"bench-{n}",
                owner_id=owner,
                status="completed",
                final_metrics={"val_accuracy": 0.9},
                duration_seconds=12.5,
            ),
            source="/runyard/experiments",
            subject=experiment_id,
        )
        published[event.id] = time.time()
        await producer.send(
            event.topic,
            event.to_json(),
            key=event.subject.encode(),
            headers=[("content-type", CONTENT_TYPE.encode())],
        )
        return event.id

    async def wait_for(count: int) -> None:
        while len(received) < count:
            arrived.clear()
            await arrived.wait()

    try:
        async with running_app(create_app(settings)) as api:
            for i in range(endpoints):
                answer = await api.post(
                    "/api/v1/webhooks",
                    json={
                        "name": f"bench {i}",
                        "url": f"{base_url}/hook/{i}",
                        "enabled_events": ["experiment.*"],
                    },
                    headers=identity_headers(owner),
                )
                answer.raise_for_status()
            # warm-up: topic created, consumer group joined, connections open; off the clock
            await publish(-1)
            await producer.flush()
            await asyncio.wait_for(wait_for(endpoints), timeout=120)
            received.clear()
            published.clear()

            started = time.time()
            for n in range(events):
                if rate:
                    await asyncio.sleep(max(0.0, started + n / rate - time.time()))
                await publish(n)
            await producer.flush()
            write_done = time.time()
            await asyncio.wait_for(wait_for(events * endpoints), timeout=600)
            if os.environ.get("BENCH_TRACE"):
                await trace(database_url)
    finally:
        await producer.stop()
        await runner.cleanup()

    latencies = [(at - published[event_id]) * 1000 for (_p, event_id), at in received.items()]
    finished = max(received.values())
    return {
        "events": events,
        "endpoints": endpoints,
        "deliveries": len(received),
        "offered_rate": rate or "unpaced",
        "publish_s": round(write_done - started, 2),
        "deliveries_per_s": round(len(received) / (finished - started), 1),
        "latency_ms_p50": round(percentile(latencies, 0.50), 1),
        "latency_ms_p95": round(percentile(latencies, 0.95), 1),
        "latency_ms_p99": round(percentile(latencies, 0.99), 1),
        "latency_ms_mean": round(statistics.fmean(latencies), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--endpoints", type=int, default=1, help="generic endpoints per event")
    parser.add_argument("--rate", type=float, default=None, help="events/s to offer (paced)")
    args = parser.parse_args()
    with local_infrastructure() as (admin_url, bootstrap):
        result = asyncio.run(run(args.events, args.endpoints, admin_url, bootstrap, args.rate))
    print(f"machine: {platform.node()} {os.cpu_count()} cores, Python {platform.python_version()}")
    for key, value in result.items():
        print(f"{key:>22}: {value}")


if __name__ == "__main__":
    main()
