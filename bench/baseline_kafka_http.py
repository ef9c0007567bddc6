"""Baseline: aiokafka producer -> broker -> aiokafka consumer -> HTTP POST, no database.

The practical ceiling of Runyard's event pipeline on this machine (issue #9 (c)): what the broker,
the Kafka client and one HTTP hop cost with nothing else in the way. No outbox, no inbox, no
delivery rows: the consumer POSTs each record's value to an aiohttp receiver in the same process
and commits the partition's offset after the batch's POSTs were answered (at-least-once, as the
services do). The producer uses the services' settings (``acks=all``, ``linger_ms=5``, gzip); the
consumer uses the shared inbox consumer's fetch settings (``fetch_max_wait_ms=100``, manual
commit). Records are CloudEvents documents of the size of an ``experiment.completed``.

Latency = the producer's send call -> the receiver's handler running (same clock). Each load runs
on a fresh topic (4 partitions, Tansu's and docker-compose's default) with a fresh consumer group.

Usage: uv run python bench/baseline_kafka_http.py [--events 3000] [--rates 200,500,1000,0]
  --rates: events/s offered per run, 0 = unpaced (everything at once: saturation)
Uses KAFKA_BOOTSTRAP_SERVERS when set, else a Tansu broker (and an unused embedded PostgreSQL,
started by ``local_infrastructure``) for the run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import time
import uuid
from typing import Any

import aiohttp
from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from report import machine, write_block

from runyard.shared.testing import free_port, local_infrastructure

PARTITIONS = 4


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def document(n: int) -> dict[str, Any]:
    """A CloudEvents envelope shaped like ``experiment.completed`` (~700 bytes of JSON)."""
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "/runyard/experiments",
        "type": "experiment.completed",
        "subject": str(uuid.uuid4()),
        "time": "2026-11-22T00:00:00Z",
        "datacontenttype": "application/json",
        "dataschema": "urn:runyard:experiment.completed:1",
        "sequence": "7",
        "data": {
            "experiment_id": str(uuid.uuid4()),
            "name": f"cnn1d-bearing-faults-{n}",
            "owner_id": str(uuid.uuid4()),
            "model_type": "cnn1d",
            "dataset_id": str(uuid.uuid4()),
            "final_metrics": {"val_accuracy": 0.953, "val_loss": 0.141, "accuracy": 0.981},
            "best_epoch": 42,
            "total_epochs": 50,
            "duration_s": 812.4,
        },
    }


class Receiver:
    """An HTTP endpoint on 127.0.0.1 that notes when each event id arrived."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.received: dict[str, float] = {}
        self.duplicates = 0
        self.done = asyncio.Event()
        self.expected = 0
        self._runner: web.AppRunner | None = None

    async def hook(self, request: web.Request) -> web.Response:
        arrived = time.time()
        event_id = json.loads(await request.read())["id"]
        if event_id in self.received:
            self.duplicates += 1
        else:
            self.received[event_id] = arrived
            if len(self.received) >= self.expected:
                self.done.set()
        return web.Response(status=204)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self.hook)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


async def forward(
    bootstrap: str, topic: str, group: str, url: str, concurrency: int, ready: asyncio.Event
) -> None:
    """The loop under test: fetch a batch, POST every record (``concurrency`` at a time), commit."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
    )
    await consumer.start()
    limit = asyncio.Semaphore(concurrency)
    connector = aiohttp.TCPConnector(limit=concurrency)
    headers = {"content-type": "application/cloudevents+json"}
    try:
        async with aiohttp.ClientSession(connector=connector) as http:

            async def post(body: bytes) -> None:
                async with limit, http.post(url, data=body, headers=headers) as response:
                    response.raise_for_status()

            while True:
                batches = await consumer.getmany(timeout_ms=1000, max_records=500)
                if consumer.assignment():
                    ready.set()
                for tp, records in batches.items():
                    await asyncio.gather(*(post(r.value) for r in records if r.value is not None))
                    await consumer.commit({tp: records[-1].offset + 1})
    finally:
        await consumer.stop()


async def run_load(
    bootstrap: str, *, events: int, rate: float, concurrency: int, receiver: Receiver
) -> dict[str, Any]:
    topic = f"baseline.{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=5,
        enable_idempotence=False,
        compression_type="gzip",
    )
    await producer.start()
    ready = asyncio.Event()
    task = asyncio.create_task(
        forward(bootstrap, topic, f"baseline-{topic}", receiver.url, concurrency, ready)
    )
    try:
        # warm-up off the clock: partitions assigned, one record through the whole loop
        await asyncio.wait_for(ready.wait(), 60)
        receiver.received.clear()
        receiver.done.clear()
        receiver.expected = 1
        await producer.send_and_wait(topic, json.dumps(document(-1)).encode(), key=b"warm")
        await asyncio.wait_for(receiver.done.wait(), 60)

        receiver.received.clear()
        receiver.done.clear()
        receiver.duplicates = 0
        receiver.expected = events
        sent_at: dict[str, float] = {}
        pending = []
        started = time.time()
        for n in range(events):
            if rate and (ahead := started + n / rate - time.time()) > 0:
                await asyncio.sleep(ahead)
            body = document(n)
            sent_at[body["id"]] = time.time()
            pending.append(
                await producer.send(topic, json.dumps(body).encode(), key=str(n % 64).encode())
            )
        await asyncio.gather(*pending)
        produced = time.time()
        await asyncio.wait_for(receiver.done.wait(), 600)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await producer.stop()
    latencies = [(receiver.received[i] - sent_at[i]) * 1000 for i in sent_at]
    finished = max(receiver.received.values())
    return {
        "offered": f"{rate:g}/s" if rate else "unpaced",
        "events": events,
        "produce_s": round(produced - started, 2),
        "events_per_s": round(events / (finished - started), 1),
        "p50_ms": round(percentile(latencies, 0.50), 1),
        "p95_ms": round(percentile(latencies, 0.95), 1),
        "p99_ms": round(percentile(latencies, 0.99), 1),
        "mean_ms": round(statistics.fmean(latencies), 1),
        "duplicates": receiver.duplicates,
    }


async def run(bootstrap: str, events: int, rates: list[float], concurrency: int) -> list[Any]:
    receiver = Receiver()
    await receiver.start()
    results = []
    try:
        for rate in rates:
            result = await run_load(
                bootstrap, events=events, rate=rate, concurrency=concurrency, receiver=receiver
            )
            print(json.dumps(result), flush=True)
            results.append(result)
    finally:
        await receiver.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--events", type=int, default=3000, help="events per load")
    parser.add_argument(
        "--rates", default="200,500,1000,0", help="comma-separated events/s; 0 = unpaced"
    )
    parser.add_argument(
        "--concurrency", type=int, default=8, help="POSTs in flight per consumer batch"
    )
    parser.add_argument(
        "--write-docs", action="store_true", help="replace this bench's block in performance.md"
    )
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",") if r.strip()]
    with local_infrastructure() as (_admin_url, bootstrap):
        results = asyncio.run(run(bootstrap, args.events, rates, args.concurrency))
    print(f"machine: {platform.node()} {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"{'offered':>10} {'events/s':>9} {'p50 ms':>9} {'p95 ms':>9} {'p99 ms':>9} {'dup':>4}")
    for r in results:
        print(
            f"{r['offered']:>10} {r['events_per_s']:>9} {r['p50_ms']:>9} "
            f"{r['p95_ms']:>9} {r['p99_ms']:>9} {r['duplicates']:>4}"
        )
    if args.write_docs:
        rows = [
            "| offered | events/s | latency p50 / p95 / p99 | duplicates |",
            "|---|---|---|---|",
            *(
                f"| {r['offered']} | {r['events_per_s']} | {r['p50_ms']} / {r['p95_ms']} / "
                f"{r['p99_ms']} ms | {r['duplicates']} |"
                for r in results
            ),
        ]
        command = (
            f"`uv run python bench/baseline_kafka_http.py --events {args.events} --rates "
            f"{args.rates} --concurrency {args.concurrency} --write-docs` ({machine()}):"
        )
        write_block("baseline_kafka_http", "latest", "\n".join([command, "", *rows]))


if __name__ == "__main__":
    main()
