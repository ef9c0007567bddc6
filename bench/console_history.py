"""Benchmark of the downsampled history read behind the console's charts.

One experiment with N epochs (default 1,000,000) x 4 metrics (train/val loss and accuracy, with
a spike every 9,973 epochs) seeded with one INSERT ... SELECT generate_series; then
``GET /api/v1/experiments/{id}/history?buckets=1000`` timed as the owner (server time: the
service in-process over ASGI, no network, no gateway), plus a zoomed read (1 % of the range) and
the statement alone (EXPLAIN ANALYZE). Checks that every spike survives at 1,000 buckets.

Usage: uv run python bench/console_history.py [--epochs 1000000] [--buckets 1000] [--repeat 30]
Uses DATABASE_URL / KAFKA_BOOTSTRAP_SERVERS when set, else starts embedded Postgres and Tansu.
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

import asyncpg

from runyard.experiments.config import Settings
from runyard.experiments.main import create_app
from runyard.shared.db import asyncpg_dsn
from runyard.shared.testing import (
    identity_headers,
    local_infrastructure,
    migrated_database,
    running_app,
)

PASSWORD = "bench-console-history"
SPIKE_EVERY = 9_973
METRICS = ["train_loss", "val_loss", "train_accuracy", "val_accuracy"]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def summary(ms: list[float]) -> str:
    return (
        f"p50 {percentile(ms, 0.5):.1f} / p95 {percentile(ms, 0.95):.1f} ms "
        f"(mean {statistics.fmean(ms):.1f}, n={len(ms)})"
    )


async def prepare_database(admin_url: str) -> tuple[str, str]:
    """A new database migrated like production; (service role URL, admin URL)."""
    name = f"bench_hist_{uuid.uuid4().hex[:8]}"
    return await migrated_database(
        admin_url, "runyard.experiments", "experiments", name=name, password=PASSWORD
    )


async def seed(admin_db_url: str, owner: uuid.UUID, epochs: int) -> uuid.UUID:
    experiment = uuid.uuid4()
    conn = await asyncpg.connect(asyncpg_dsn(admin_db_url))
    try:
        await conn.execute(
            """INSERT INTO experiments.experiments (id, name, owner_id, status, config,
                   hyperparameters, metrics, total_epochs, version, best_metric, best_mode,
                   created_at, updated_at)
               VALUES ($1, 'long run', $2, 'running', '{}', '{}',
                   '{"train_loss": 0.1, "val_loss": 0.1, "train_accuracy": 0.9,
                     "val_accuracy": 0.9}', $3, 1, 'val_loss', 'min', now(), now())""",
            experiment,
            owner,
            epochs,
        )
        started = time.perf_counter()
        await conn.execute(
            f"""INSERT INTO experiments.training_runs (experiment_id, epoch, train_loss, val_loss,
                   train_accuracy, val_accuracy, metrics, created_at, updated_at)
                SELECT $1, e, 1.0 / (e + 1), 1.1 / (e + 1)
                         + CASE WHEN e % {SPIKE_EVERY} = 0 THEN 50 ELSE 0 END,
                       0.5 + e::float8 / $2 / 2, 0.45 + e::float8 / $2 / 2, '{{}}',
                       now() - make_interval(secs => $2 - e), now()
                FROM generate_series(0, $2 - 1) AS e""",
            experiment,
            epochs,
        )
        await conn.execute("ANALYZE experiments.training_runs")
        print(f"seeded {epochs:,} epochs in {time.perf_counter() - started:.1f} s")
    finally:
        await conn.close()
    return experiment


async def run(args: argparse.Namespace, admin_url: str, bootstrap: str) -> dict[str, Any]:
    url, admin_db = await prepare_database(admin_url)
    owner = uuid.uuid4()
    experiment = await seed(admin_db, owner, args.epochs)
    headers = identity_headers(owner)
    settings = Settings(
        environment="test",
        database_url=url,
        kafka_bootstrap_servers=bootstrap,
        log_level="WARNING",
        log_json=True,
        run_workers=False,
    )
    result: dict[str, Any] = {"epochs x metrics": f"{args.epochs:,} x {len(METRICS)}"}
    path = f"/api/v1/experiments/{experiment}/history"
    params: list[tuple[str, str | int]] = [("buckets", args.buckets)]
    params += [("metric", m) for m in METRICS]
    async with running_app(create_app(settings)) as client:
        for _ in range(3):  # warm the cache and the connection pool
            await client.get(path, params=params, headers=headers)
        times = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            response = await client.get(path, params=params, headers=headers)
            times.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, response.text
        body = response.json()
        spikes = sum(1 for v in body["series"]["val_loss"]["max"] if v is not None and v > 40)
        expected = len(range(0, args.epochs, SPIKE_EVERY))
        result[f"history, {args.buckets} buckets"] = summary(times)
        result["buckets returned / bytes"] = f"{len(body['epoch'])} / {len(response.content):,}"
        result["spikes kept (max > 40)"] = f"{spikes} of {expected}"
        zoom = [
            *params,
            ("from_epoch", args.epochs // 2),
            ("to_epoch", args.epochs // 2 + args.epochs // 100),
        ]
        zoomed = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            await client.get(path, params=zoom, headers=headers)
            zoomed.append((time.perf_counter() - started) * 1000)
        result["zoomed to 1 % of the range"] = summary(zoomed)
    result["statement alone (EXPLAIN ANALYZE)"] = await explain(admin_db, experiment, args)
    return result


async def explain(admin_db_url: str, experiment: uuid.UUID, args: argparse.Namespace) -> str:
    """The aggregate statement's own execution time (PostgreSQL's figure), median of 5."""
    aggregates = ", ".join(
        f"min({m}), max({m}), max(epoch) FILTER (WHERE {m} IS NOT NULL)" for m in METRICS
    )
    sql = (
        f"EXPLAIN (ANALYZE, FORMAT JSON) SELECT (epoch::bigint * {args.buckets}) / {args.epochs}"
        f" AS b, max(epoch), {aggregates} FROM experiments.training_runs"
        " WHERE experiment_id = $1 GROUP BY b"
    )
    conn = await asyncpg.connect(asyncpg_dsn(admin_db_url))
    try:
        times = []
        for _ in range(5):
            plan = json.loads(await conn.fetchval(sql, experiment))
            times.append(plan[0]["Execution Time"])
    finally:
        await conn.close()
    return f"{statistics.median(times):.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=1_000_000)
    parser.add_argument("--buckets", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    with local_infrastructure() as (admin_url, bootstrap):
        result = asyncio.run(run(args, admin_url, bootstrap))
    print(f"machine: {platform.node()} {os.cpu_count()} cores, Python {platform.python_version()}")
    for key, value in result.items():
        print(f"{key:>34}: {value}")


if __name__ == "__main__":
    main()
