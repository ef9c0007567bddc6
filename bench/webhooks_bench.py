"""Benchmark: events on Kafka -> webhooks fan-out consumer -> delivery worker -> HTTP receiver.

Runs the real webhooks service in this process (consumer, delivery worker, outbox relay) against
a real PostgreSQL and a real Kafka-protocol broker. The load (an aiokafka producer) and the
receiver (aiohttp on 127.0.0.1) run in a second process, so that this process's CPU time is the
service's own. Publishes N ``experiment.completed`` events for one owner who has --endpoints
generic endpoints (every delivery signed) and reports:
- deliveries per second (first publish -> last delivery received),
- latency per delivery, from the event's publish to Kafka to its receipt, p50/p95/p99,
- CPU milliseconds per delivery of the service process, PostgreSQL, the broker and the load
  process (user + system time during the measured phase; the machine is shared, so this moves
  much less than the wall-clock figures).

``--prequeued``: the delivery worker alone. N pending deliveries are inserted straight into the
table (no Kafka), then the worker sends them all.

Usage: uv run python bench/webhooks_bench.py [--events 2000] [--endpoints 1] [--rate 100]
       [--prequeued] [--log-level WARNING]
Uses DATABASE_URL / KAFKA_BOOTSTRAP_SERVERS when set, else starts embedded Postgres and Tansu.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).parent))

from cpu_meter import CpuMeter, children_named, postgres_cluster, this_process

from runyard.shared.testing import (
    _with_db,
    free_port,
    identity_headers,
    local_infrastructure,
    running_app,
    wait_for_port,
)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


# --- the load process: producer + receiver -------------------------------------------------------


class Load:
    """Publishes ``experiment.completed`` events and receives the webhooks; controlled over
    HTTP by the benchmark (``/control/...``)."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.received: dict[tuple[str, str], float] = {}
        self.duplicates = 0
        self.published: dict[str, float] = {}
        self.producer: Any = None

    async def hook(self, request: web.Request) -> web.Response:
        await request.read()
        key = (request.path, request.headers["webhook-id"])
        if key in self.received:
            self.duplicates += 1
        else:
            self.received[key] = time.time()
        return web.Response(text="ok")

    async def publish(self, request: web.Request) -> web.Response:
        from runyard.shared.contracts.experiments import ExperimentCompleted
        from runyard.shared.events import CONTENT_TYPE, make_event

        spec = await request.json()
        owner = uuid.UUID(spec["owner"])
        rate = spec.get("rate")
        started = time.time()
        for n in range(spec["events"]):
            if rate:
                await asyncio.sleep(max(0.0, started + n / rate - time.time()))
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
            self.published[event.id] = time.time()
            await self.producer.send(
                event.topic,
                event.to_json(),
                key=event.subject.encode(),
                headers=[("content-type", CONTENT_TYPE.encode())],
            )
        await self.producer.flush()
        return web.json_response({"started": started, "publish_s": time.time() - started})

    async def stats(self, request: web.Request) -> web.Response:
        answer: dict[str, Any] = {"received": len(self.received), "duplicates": self.duplicates}
        if request.query.get("full"):
            answer["latencies_ms"] = [
                (at - self.published[event_id]) * 1000
                for (_path, event_id), at in self.received.items()
                if event_id in self.published
            ]
            answer["finished"] = max(self.received.values(), default=0.0)
        return web.json_response(answer)

    async def reset(self, _request: web.Request) -> web.Response:
        self.received.clear()
        self.published.clear()
        self.duplicates = 0
        return web.json_response({})

    async def serve(self, port: int) -> None:
        from aiokafka import AIOKafkaProducer

        self.producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=5)
        await self.producer.start()
        app = web.Application()
        app.router.add_post("/control/publish", self.publish)
        app.router.add_get("/control/stats", self.stats)
        app.router.add_post("/control/reset", self.reset)
        app.router.add_post("/{tail:.*}", self.hook)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.producer.stop()
            await runner.cleanup()


def start_load(bootstrap: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--load-process", bootstrap, str(port)],
        stdout=subprocess.DEVNULL,
    )
    wait_for_port("127.0.0.1", port, timeout=60)
    return proc, f"http://127.0.0.1:{port}"


# --- the service under test -------------------------------------------------------------------


async def provision(admin_url: str) -> str:
    from runyard.shared.migrations import upgrade
    from runyard.shared.provision import ensure_database, provision_service, role_url

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


async def prequeue(database_url: str, count: int) -> None:
    """``count`` pending deliveries of new ``experiment.completed`` events to every endpoint."""
    import asyncpg

    from runyard.shared.db import asyncpg_dsn

    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await conn.execute(
            "INSERT INTO webhooks.webhook_deliveries (id, webhook_id, event_id, event_type,"
            " payload, status, attempt_count, next_attempt_at, trigger_type, automatic_retries)"
            " SELECT gen_random_uuid(), w.id, e.id, 'experiment.completed',"
            " jsonb_build_object('specversion', '1.0', 'id', e.id, 'source',"
            " '/runyard/experiments', 'type', 'experiment.completed', 'subject', e.x,"
            " 'time', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),"
            " 'datacontenttype', 'application/json', 'data', jsonb_build_object("
            " 'experiment_id', e.x, 'name', 'bench-' || e.n, 'owner_id', w.owner_id,"
            " 'status', 'completed', 'final_metrics', jsonb_build_object('val_accuracy', 0.9),"
            " 'duration_seconds', 12.5)), 'pending', 0, now(), 'event', true"
            " FROM webhooks.webhook_configurations w CROSS JOIN (SELECT n,"
            " gen_random_uuid()::text AS id, gen_random_uuid()::text AS x"
            " FROM generate_series(1, $1) n) e",
            count,
        )
    finally:
        await conn.close()


async def wait_for(load: aiohttp.ClientSession, base: str, count: int, within: float) -> None:
    deadline = time.monotonic() + within
    while True:
        async with load.get(f"{base}/control/stats") as answer:
            if (await answer.json())["received"] >= count:
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"fewer than {count} deliveries after {within} s")
        await asyncio.sleep(0.1)


async def run(args: argparse.Namespace, admin_url: str, bootstrap: str) -> dict[str, Any]:
    from runyard.webhooks.config import Settings
    from runyard.webhooks.main import create_app

    events, endpoints = args.events, args.endpoints
    database_url = await provision(admin_url)
    settings = Settings(
        environment="test",
        database_url=database_url,
        kafka_bootstrap_servers=bootstrap,
        allow_private_targets=True,
        log_level=args.log_level,
        db_pool_size=20,
    )
    proc, base = start_load(bootstrap)
    meter = CpuMeter(
        {
            "service": this_process,
            "postgres": await postgres_cluster(database_url),
            "broker": children_named("tansu"),
            "load+receiver": lambda: [__import__("psutil").Process(proc.pid)],
        }
    )
    owner = uuid.uuid4()
    publish = {"owner": str(owner), "events": events, "rate": args.rate}
    try:
        async with aiohttp.ClientSession() as load, running_app(create_app(settings)) as api:
            for i in range(endpoints):
                answer = await api.post(
                    "/api/v1/webhooks",
                    json={
                        "name": f"bench {i}",
                        "url": f"{base}/hook/{i}",
                        "enabled_events": ["experiment.*"],
                    },
                    headers=identity_headers(owner),
                )
                answer.raise_for_status()
            # warm-up off the clock: topic created, consumer group joined, connections open
            async with load.post(f"{base}/control/publish", json={**publish, "events": 1}):
                pass
            await wait_for(load, base, endpoints, within=120)
            async with load.post(f"{base}/control/reset"):
                pass

            meter.start()
            if args.prequeued:
                started = time.time()
                await prequeue(database_url, events)
                publish_s = 0.0
            else:
                async with load.post(f"{base}/control/publish", json=publish) as answer:
                    published = await answer.json()
                started, publish_s = published["started"], published["publish_s"]
            await wait_for(load, base, events * endpoints, within=600)
            meter.stop()
            async with load.get(f"{base}/control/stats", params={"full": "1"}) as answer:
                stats = await answer.json()
            if os.environ.get("BENCH_TRACE"):
                await trace(database_url)
    finally:
        proc.terminate()
        proc.wait(timeout=10)

    deliveries = stats["received"]
    latencies = stats["latencies_ms"] or [0.0]
    result: dict[str, Any] = {
        "mode": "delivery worker alone (pre-queued)" if args.prequeued else "Kafka -> HTTP",
        "events": events,
        "endpoints": endpoints,
        "deliveries": deliveries,
        "duplicates": stats["duplicates"],
        "offered_rate": args.rate or "unpaced",
        "publish_s": round(publish_s, 2),
        "deliveries_per_s": round(deliveries / (stats["finished"] - started), 1),
        "cpu_ms_per_delivery": meter.per_operation(deliveries),
    }
    if not args.prequeued:
        result |= {
            "latency_ms_p50": round(percentile(latencies, 0.50), 1),
            "latency_ms_p95": round(percentile(latencies, 0.95), 1),
            "latency_ms_p99": round(percentile(latencies, 0.99), 1),
            "latency_ms_mean": round(statistics.fmean(latencies), 1),
        }
    return result


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--load-process":
        asyncio.run(Load(sys.argv[2]).serve(int(sys.argv[3])))
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--endpoints", type=int, default=1, help="generic endpoints per event")
    parser.add_argument("--rate", type=float, default=None, help="events/s to offer (paced)")
    parser.add_argument(
        "--prequeued", action="store_true", help="the delivery worker alone, no Kafka"
    )
    parser.add_argument("--log-level", default="WARNING", help="the service's log level")
    args = parser.parse_args()
    with local_infrastructure() as (admin_url, bootstrap):
        result = asyncio.run(run(args, admin_url, bootstrap))
    print(f"machine: {platform.node()} {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"load average: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    for key, value in result.items():
        print(f"{key:>22}: {value}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
