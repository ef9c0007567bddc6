"""The prediction log (issue #20): ingestion through the gateway, the stats read over 10 million
rows, and partition maintenance at 36 months.

One run starts the local stack as ``make up`` does (``cpu_budget.LocalStack``: temporary data
directory, free ports), registers a user through the gateway and gives it a model version with
an input JSON Schema (written straight into the database: the registry's own API needs an
experiment with artifacts, which is not what is measured here). Then:

1. ``ingest``: ``--clients`` clients each POST batches of ``--batch`` predictions (each input
   checked against the schema) through the gateway, ``--batches`` in all; rows/s, request
   latency and CPU per row of every process (``cpu_budget.Meter``: the services, the broker,
   the PostgreSQL backends by role ...), charged until the stack is quiet again.
2. ``stats``: ``--rows`` predictions of another version in the current month (from its first
   instant to now), bulk-loaded with COPY straight into the partition, and their per-minute and
   per-hour rollups computed with the service's own code (``histograms.summarize``) and
   written with its upsert; then ``GET .../predictions/stats`` over the whole month through the
   gateway ``--stats-requests`` times: p50/p95 (approximate percentiles: the window holds more
   than ``EXPERIMENTS_PREDICTIONS_EXACT_PERCENTILES_MAX`` rows), and one window of 100,000 rows
   with exact percentiles.
3. ``partitions``: ``partitions.maintain`` making 36 months ahead, then dropping them (and the
   current month with its rows); seconds each.

Usage: uv run python bench/predictions_bench.py [--clients 4] [--batches 200] [--batch 1000]
       [--rows 10000000] [--stats-requests 30] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import shutil
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import numpy as np
from cpu_budget import LocalStack, Meter, Phase, claims_of, measured, new_user, render
from mlflow_compare import machine_info, quantiles

from runyard.experiments.predictions import histograms, partitions, repository
from runyard.shared.db import create_engine, create_sessionmaker

SCHEMA = {
    "type": "object",
    "properties": {
        "rpm": {"type": "number", "minimum": 0},
        "load": {"type": "number"},
        "sensor": {"type": "string"},
    },
    "required": ["rpm", "load"],
}
COPY_CHUNK = 500_000


async def make_version(conn: asyncpg.Connection, owner: uuid.UUID, name: str) -> uuid.UUID:
    model_id, version_id = uuid.uuid4(), uuid.uuid4()
    await conn.execute(
        "INSERT INTO experiments.registered_models (id, owner_id, name, last_version) "
        "VALUES ($1, $2, $3, 1)",
        model_id,
        owner,
        name,
    )
    await conn.execute(
        "INSERT INTO experiments.model_versions (id, model_id, owner_id, version, artifact_path, "
        "status, input_schema) VALUES ($1, $2, $3, 1, 'model', 'ready', $4::jsonb)",
        version_id,
        model_id,
        owner,
        json.dumps(SCHEMA),
    )
    return version_id


def batch_body(size: int, seed: int) -> bytes:
    rows = [
        {
            "input": {"rpm": 1400 + (seed + i) % 200, "load": 0.5, "sensor": "de"},
            "output": {"fault": "none"},
            "confidence": ((seed + i) * 7 % 100) / 100,
            "latency_ms": 2.0 + (i % 50) / 10,
        }
        for i in range(size)
    ]
    return json.dumps({"predictions": rows}).encode()


async def ingest(args: argparse.Namespace, stack: LocalStack, meter: Meter, user: Any) -> Phase:
    url = f"{stack.gateway_url}/api/v1/models/ingest/versions/1/predictions"
    bodies = [batch_body(args.batch, seed) for seed in range(8)]
    latencies: list[float] = []
    todo = list(range(args.batches))
    headers = {**(await user.headers()), "content-type": "application/json"}

    async def client(session: aiohttp.ClientSession) -> None:
        while todo:
            n = todo.pop()
            began = time.perf_counter()
            async with session.post(url, data=bodies[n % len(bodies)], headers=headers) as r:
                text = await r.text()
                if r.status != 201:
                    raise RuntimeError(f"{r.status}: {text[:500]}")
            latencies.append((time.perf_counter() - began) * 1000)

    box: list[Any] = []
    async with aiohttp.ClientSession() as session:
        # warm-up: connections, the validator cache, the month's partition
        await asyncio.gather(
            *(client_once(session, url, bodies[0], headers) for _ in range(args.clients))
        )
        await meter.settle(60)
        began = time.perf_counter()
        async with measured(meter, 15.0, box):
            await asyncio.gather(*(client(session) for _ in range(args.clients)))
            wall = time.perf_counter() - began
    rows = args.batches * args.batch
    figures = {
        "rows/s": round(rows / wall),
        "requests/s": round(args.batches / wall, 1),
        "request ms": {k: round(v, 1) for k, v in quantiles(latencies).items()},
    }
    return Phase(
        "ingest",
        f"ingest: {args.clients} clients, batches of {args.batch}",
        "row",
        rows,
        box[0],
        figures,
    )


async def client_once(
    session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str]
) -> None:
    async with session.post(url, data=body, headers=headers) as r:
        if r.status != 201:
            raise RuntimeError(f"{r.status}: {await r.text()}")


async def bulk_load(dsn: str, version_id: uuid.UUID, rows: int, now: datetime) -> dict[str, Any]:
    """``rows`` predictions spread evenly over the current month up to ``now`` (COPY), and their
    rollups (the service's code)."""
    month = partitions.month_start(partitions.month_of(now))
    span = (now - month).total_seconds() - 1
    rng = np.random.default_rng(20)
    conn = await asyncpg.connect(dsn)
    totals: dict[tuple[int, int], histograms.Summary] = {}
    began = time.perf_counter()
    try:
        for offset in range(0, rows, COPY_CHUNK):
            count = min(COPY_CHUNK, rows - offset)
            seconds = month.timestamp() + (np.arange(offset, offset + count) / rows) * span
            latency = rng.lognormal(np.log(20), 0.6, count)
            confidence = rng.beta(8, 2, count)
            confidence[rng.random(count) < 0.02] = np.nan
            failed = rng.random(count) < 0.01
            times = [datetime.fromtimestamp(s, UTC) for s in seconds.tolist()]
            conf = [None if c != c else c for c in confidence.tolist()]
            err = ["timeout" if f else None for f in failed.tolist()]
            records = zip(
                [version_id] * count,
                times,
                ['{"rpm": 1500}'] * count,
                ['"ok"'] * count,
                conf,
                latency.tolist(),
                err,
                strict=True,
            )
            await conn.copy_records_to_table(
                "predictions",
                schema_name="experiments",
                columns=[
                    "version_id",
                    "time",
                    "input",
                    "output",
                    "confidence",
                    "latency_ms",
                    "error",
                ],
                records=records,
            )
            for grain in (60, 3600):
                starts = (np.floor(seconds / grain) * grain).astype(np.int64)
                for start, summary in histograms.summarize(
                    starts, latency, confidence, failed
                ).items():
                    totals.setdefault((grain, start), histograms.Summary()).add(summary)
            print(f"  [load] {offset + count:,} rows", flush=True)
        loaded = time.perf_counter() - began
        items = [(g, datetime.fromtimestamp(s, UTC), v) for (g, s), v in totals.items()]
        for i in range(0, len(items), 500):
            async with conn.transaction():
                await repository.add_rollups(conn, version_id, items[i : i + 500])
        await conn.execute("ANALYZE experiments.predictions")
        await conn.execute("ANALYZE experiments.prediction_rollups")
    finally:
        await conn.close()
    return {
        "load_s": round(loaded, 1),
        "rollups_s": round(time.perf_counter() - began - loaded, 1),
        "rollup_rows": len(items),
    }


async def stats_requests(
    stack: LocalStack, user: Any, params: dict[str, str], n: int
) -> tuple[list[float], dict[str, Any]]:
    url = f"{stack.gateway_url}/api/v1/models/month/versions/1/predictions/stats"
    headers = await user.headers()
    times: list[float] = []
    body: dict[str, Any] = {}
    async with aiohttp.ClientSession() as session:
        for _ in range(n + 2):
            began = time.perf_counter()
            async with session.get(url, params=params, headers=headers) as r:
                body = await r.json()
                assert r.status == 200, body
            times.append((time.perf_counter() - began) * 1000)
    return times[2:], body


async def run(args: argparse.Namespace, stack: LocalStack) -> None:
    meter = await Meter.connect(stack, 0.6)
    _, dsn = stack.postmaster()
    try:
        async with aiohttp.ClientSession() as session:
            user = await new_user(session, stack.gateway_url, "pred")
            owner = uuid.UUID(claims_of(user)["sub"])
            conn = await asyncpg.connect(dsn)
            try:
                await make_version(conn, owner, "ingest")
                month_version = await make_version(conn, owner, "month")
            finally:
                await conn.close()
            if "ingest" in args.phases:
                print(
                    f"[ingest] {args.batches} batches of {args.batch}, {args.clients} clients",
                    flush=True,
                )
                print(render(await ingest(args, stack, meter, user), {}), flush=True)
            if "stats" in args.phases:
                now = datetime.now(UTC)
                print(f"[stats] bulk-loading {args.rows:,} rows into the current month", flush=True)
                load = await bulk_load(dsn, month_version, args.rows, now)
                print(f"  {load}", flush=True)
                month = partitions.month_start(partitions.month_of(now))
                whole = {"from": month.isoformat(), "to": now.isoformat()}
                times, body = await stats_requests(stack, user, whole, args.stats_requests)
                print(
                    f"  whole month ({body['count']:,} rows, exact={body['latency_ms']['exact']}): "
                    f"{ {k: round(v, 1) for k, v in quantiles(times).items()} } ms",
                    flush=True,
                )
                print(
                    f"  latency {body['latency_ms']}; error rate {body['error_rate']:.4f}; psi {body['drift']['psi']}",
                    flush=True,
                )
                ragged = {
                    "from": (month + timedelta(hours=7, seconds=13)).isoformat(),
                    "to": (now - timedelta(seconds=29)).isoformat(),
                }
                times, body = await stats_requests(stack, user, ragged, args.stats_requests)
                print(
                    f"  ragged window ({body['count']:,} rows): { ({k: round(v, 1) for k, v in quantiles(times).items()}) } ms",
                    flush=True,
                )
                per_second = args.rows / ((now - month).total_seconds())
                small_to = now - timedelta(hours=1)
                small = {
                    "from": (small_to - timedelta(seconds=90_000 / per_second)).isoformat(),
                    "to": small_to.isoformat(),
                }
                times, body = await stats_requests(stack, user, small, args.stats_requests)
                print(
                    f"  exact window ({body['count']:,} rows, exact={body['latency_ms']['exact']}): "
                    f"{ ({k: round(v, 1) for k, v in quantiles(times).items()}) } ms",
                    flush=True,
                )
            if "partitions" in args.phases:
                engine = create_engine(
                    f"postgresql+asyncpg://{dsn.removeprefix('postgresql://')}", pool_size=1
                )
                try:
                    sessionmaker = create_sessionmaker(engine, schema="experiments")
                    now = datetime.now(UTC)
                    began = time.perf_counter()
                    async with sessionmaker() as s, s.begin():
                        made = await partitions.maintain(
                            s, now=now, months_ahead=36, retention_months=12
                        )
                    create_s = time.perf_counter() - began
                    later = partitions.month_start(
                        partitions.add_months(partitions.month_of(now), 37)
                    )
                    began = time.perf_counter()
                    async with sessionmaker() as s, s.begin():
                        gone = await partitions.maintain(
                            s, now=later, months_ahead=0, retention_months=0
                        )
                    drop_s = time.perf_counter() - began
                finally:
                    await engine.dispose()
                print(
                    f"[partitions] made {len(made.created)} in {create_s:.2f} s; dropped {len(gone.dropped)} "
                    f"(one with the loaded rows) in {drop_s:.2f} s",
                    flush=True,
                )
    finally:
        await meter.conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--phases", default="ingest,stats,partitions")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--stats-requests", type=int, default=30)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    args.phases = [p.strip() for p in args.phases.split(",")]
    info = machine_info()
    print(
        f"command: {shlex.join(['uv', 'run', 'python', 'bench/predictions_bench.py', *sys.argv[1:]])}"
    )
    print(
        f"machine: {info['hostname']}, {info['cores']} cores, {info['memory_gib']} GiB, "
        f"Python {info['python']}; load average {info['load_average']}",
        flush=True,
    )
    workdir = Path(tempfile.mkdtemp(prefix="runyard-predictions-"))
    stack = LocalStack(workdir / "data")
    try:
        up = stack.start(240)
        print(f"[setup] stack up in {up:.1f} s", flush=True)
        asyncio.run(run(args, stack))
    finally:
        stack.stop()
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
