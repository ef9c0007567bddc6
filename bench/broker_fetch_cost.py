"""What a consumer's fetches cost the broker, by how many partitions they name.

Starts its own Tansu (in memory, as the local stack does), creates ``--topics`` topics of 4
partitions, and measures Tansu's CPU (cores = CPU seconds / wall seconds) while one consumer:

- fetches every partition (``fetch_max_wait_ms`` 100 and 50: the services' inbox consumers and
  the console's live consumer while they fetch), with nothing published;
- the same while one topic gets ``--rate`` records a second (a training loop's
  ``experiment.epochs_logged``);
- fetches only the busy topic's partitions, the others paused (consumers resting partition by
  partition);
- fetches nothing, and asks for the paused partitions' end offsets (one ListOffsets request)
  every 0.25 s (the console's check while its pages are open and nothing happens).

    uv run python bench/broker_fetch_cost.py [--topics 28] [--seconds 10] [--rate 10]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import time
from collections.abc import Awaitable, Callable

import psutil
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from runyard.shared.testing import free_port, start_tansu

PARTITIONS = 4


def cpu_s(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


async def phase(
    pid: int,
    seconds: float,
    consumer: AIOKafkaConsumer,
    *extra: Callable[[], Awaitable[None]],
) -> float:
    async def fetch() -> None:
        while True:
            await consumer.getmany(timeout_ms=250)

    tasks = [asyncio.create_task(fetch()), *(asyncio.create_task(e()) for e in extra)]
    try:
        await asyncio.sleep(2.0)  # settle
        before, started = cpu_s(pid), time.monotonic()
        await asyncio.sleep(seconds)
        return (cpu_s(pid) - before) / (time.monotonic() - started)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def bench(args: argparse.Namespace) -> list[tuple[str, float]]:
    port = free_port()
    proc = start_tansu(port)
    bootstrap = f"127.0.0.1:{port}"
    results: list[tuple[str, float]] = []
    try:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        topics = [f"bench.t{i}" for i in range(args.topics)]
        await admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in topics])
        await admin.close()
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        busy = topics[0]

        async def publish() -> None:
            n = 0
            while True:
                await producer.send_and_wait(busy, b"x" * 600, key=str(n % 4).encode())
                n += 1
                await asyncio.sleep(1 / args.rate)

        for wait_ms in (100, 50):
            consumer = AIOKafkaConsumer(
                *topics,
                bootstrap_servers=bootstrap,
                group_id=None,
                fetch_max_wait_ms=wait_ms,
                auto_offset_reset="latest",
                consumer_timeout_ms=2000,
            )
            await consumer.start()
            for _ in range(200):  # no group: assigned from the first metadata answer
                if consumer.assignment():
                    break
                await asyncio.sleep(0.05)
            every = len(consumer.assignment())
            label = f"{every} partitions fetched, wait {wait_ms} ms"
            results.append(
                (f"{label}, nothing published", await phase(proc.pid, args.seconds, consumer))
            )
            if wait_ms == 100:
                results.append(
                    (
                        f"{label}, {args.rate:g} records/s on one topic",
                        await phase(proc.pid, args.seconds, consumer, publish),
                    )
                )
                quiet = [tp for tp in consumer.assignment() if tp.topic != busy]
                consumer.pause(*quiet)
                results.append(
                    (
                        f"{PARTITIONS} partitions fetched (the busy topic's), wait {wait_ms} ms, "
                        f"{args.rate:g} records/s",
                        await phase(proc.pid, args.seconds, consumer, publish),
                    )
                )
            else:
                consumer.pause(*consumer.assignment())

                async def check(consumer: AIOKafkaConsumer = consumer) -> None:
                    while True:
                        await consumer.end_offsets(sorted(consumer.paused()))
                        await asyncio.sleep(0.25)

                results.append(
                    (
                        f"none fetched, {every} partitions' end offsets every 0.25 s",
                        await phase(proc.pid, args.seconds, consumer, check),
                    )
                )
            await consumer.stop()
        await producer.stop()
    finally:
        proc.kill()
        with contextlib.suppress(Exception):
            proc.wait(10)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--topics", type=int, default=28, help="the console's live topics: 28")
    parser.add_argument("--seconds", type=float, default=10.0, help="per phase")
    parser.add_argument("--rate", type=float, default=10.0, help="records/s on the busy topic")
    args = parser.parse_args()
    print(
        f"machine: {platform.node()}, {os.cpu_count()} cores, load average "
        f"{[round(x, 2) for x in os.getloadavg()]}; {args.topics} topics x {PARTITIONS} "
        "partitions, one consumer, Tansu in memory",
        flush=True,
    )
    results = asyncio.run(bench(args))
    print("| one consumer | Tansu, cores |\n|---|---|")
    for label, cores in results:
        print(f"| {label} | {cores:.3f} |")


if __name__ == "__main__":
    main()
