"""Benchmark of the experiments service: per-epoch logging and search at 100,000 experiments.

1. Per-epoch logging, MLflow's usual pattern: one request per epoch with 4 metrics
   (train/val loss and accuracy), sequential, one client. Reports latency p50/p95/p99 and
   epochs/s; also one batch of 1,000 epochs in a single request.
2. Search: seeds N experiments (default 100,000, one owner, multi-row INSERT ... SELECT unnest)
   with metrics, parameters, tags and notes, then times filtered searches (first page, 50 rows)
   as that user and as an admin; and a deep keyset page.

The service runs in-process (httpx over ASGI) by default, or with --uvicorn as a real uvicorn
process on a local port (HTTP/1.1 keep-alive). Not through the gateway.

Usage: uv run python bench/experiments_bench.py [--epochs 500] [--experiments 100000]
       [--repeat 30] [--uvicorn]
Uses DATABASE_URL / KAFKA_BOOTSTRAP_SERVERS when set, else starts embedded Postgres and Tansu.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx

from runyard.experiments.config import Settings
from runyard.experiments.main import create_app
from runyard.experiments.tracking.repository import search
from runyard.shared.db import asyncpg_dsn, create_engine
from runyard.shared.identity import Principal
from runyard.shared.testing import (
    free_port,
    identity_headers,
    local_infrastructure,
    migrated_database,
    running_app,
    wait_for_port,
)

PASSWORD = "bench-experiments"
MODEL_TYPES = ["cnn1d", "resnet1d", "lstm", "transformer", "xgboost"]
STATUSES = ["completed"] * 6 + ["failed", "cancelled", "running", "pending"]
TAGS = ["baseline", "pump", "gearbox", "ablation", "augmented", "production", "wip", "sweep"]
WORDS = ["bearing", "cavitation", "drive", "end", "fault", "vibration", "spectrum", "imbalance"]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def summary(ms: list[float]) -> str:
    return (
        f"p50 {percentile(ms, 0.5):.2f} / p95 {percentile(ms, 0.95):.2f} / "
        f"p99 {percentile(ms, 0.99):.2f} ms (mean {statistics.fmean(ms):.2f})"
    )


async def prepare_database(admin_url: str) -> tuple[str, str]:
    """A new database migrated like production; (service role URL, admin URL)."""
    name = f"bench_exp_{uuid.uuid4().hex[:8]}"
    return await migrated_database(
        admin_url, "runyard.experiments", "experiments", name=name, password=PASSWORD
    )


def start_uvicorn(url: str, bootstrap: str, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "EXPERIMENTS_ENVIRONMENT": "test",
        "EXPERIMENTS_DATABASE_URL": url,
        "EXPERIMENTS_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "EXPERIMENTS_LOG_LEVEL": "WARNING",
        "EXPERIMENTS_LOG_JSON": "true",
    }
    command = [sys.executable, "-m", "uvicorn", "runyard.experiments.main:create_app"]
    command += ["--factory", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--log-level", "warning", "--no-access-log"]
    return subprocess.Popen(command, env=env, start_new_session=True)


@contextlib.asynccontextmanager
async def service_client(url: str, bootstrap: str, use_uvicorn: bool) -> AsyncIterator[Any]:
    if not use_uvicorn:
        settings = Settings(
            environment="test",
            database_url=url,
            kafka_bootstrap_servers=bootstrap,
            log_level="WARNING",
            log_json=True,
        )
        async with running_app(create_app(settings)) as client:
            yield client
        return
    port = free_port()
    proc = start_uvicorn(url, bootstrap, port)
    try:
        await asyncio.to_thread(wait_for_port, "127.0.0.1", port, 60.0)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            for _ in range(100):
                if (await client.get("/ready")).status_code == 200:
                    break
                await asyncio.sleep(0.1)
            yield client
    finally:
        proc.terminate()
        proc.wait(timeout=20)


async def timed(call: Callable[[], Awaitable[httpx.Response]]) -> tuple[float, httpx.Response]:
    started = time.perf_counter()
    response = await call()
    return (time.perf_counter() - started) * 1000, response


# --- 1. per-epoch logging ----------------------------------------------------------------------


async def bench_logging(client: Any, epochs: int) -> dict[str, str]:
    headers = identity_headers(uuid.uuid4())
    experiment = (
        await client.post("/api/v1/experiments", json={"name": "bench-log"}, headers=headers)
    ).json()
    url = f"/api/v1/experiments/{experiment['id']}/runs"

    def metrics(epoch: int) -> dict[str, Any]:
        return {
            "epoch": epoch,
            "train_loss": 1 / (epoch + 1),
            "val_loss": 1.1 / (epoch + 1),
            "train_accuracy": 1 - 0.5 / (epoch + 1),
            "val_accuracy": 1 - 0.55 / (epoch + 1),
        }

    for epoch in range(20):  # warm-up: connections, prepared statements
        await client.post(url, json=metrics(epoch), headers=headers)
    latencies: list[float] = []
    started = time.perf_counter()
    for epoch in range(20, 20 + epochs):
        ms, response = await timed(
            lambda e=epoch: client.post(url, json=metrics(e), headers=headers)
        )
        assert response.status_code == 201, response.text
        latencies.append(ms)
    wall = time.perf_counter() - started
    retry_ms, retry = await timed(lambda: client.post(url, json=metrics(25), headers=headers))
    assert retry.status_code == 200 and retry.json()["unchanged"] == 1

    other = (
        await client.post("/api/v1/experiments", json={"name": "bench-batch"}, headers=headers)
    ).json()
    batch = {"runs": [metrics(e) for e in range(1000)]}
    batch_ms, response = await timed(
        lambda: client.post(f"/api/v1/experiments/{other['id']}/runs", json=batch, headers=headers)
    )
    assert response.json()["inserted"] == 1000
    return {
        "per-epoch requests": f"{epochs} sequential, 4 metrics each",
        "per-epoch latency": summary(latencies),
        "per-epoch throughput": f"{epochs / wall:.0f} epochs/s (one client)",
        "retried epoch (no-op)": f"{retry_ms:.2f} ms",
        "batch of 1,000 epochs": f"{batch_ms:.0f} ms in one request ({1000 / batch_ms * 1000:.0f} epochs/s)",
    }


# --- 2. search at N experiments -----------------------------------------------------------------


async def seed(admin_url: str, owner: uuid.UUID, count: int, dataset_id: uuid.UUID) -> float:
    """``count`` experiments of ``owner`` with one multi-row INSERT per 10,000 rows."""
    rng = random.Random(42)
    conn = await asyncpg.connect(asyncpg_dsn(admin_url))
    started = time.perf_counter()
    now = datetime.now(UTC)
    try:
        await conn.execute(
            "INSERT INTO experiments.datasets (id, owner_id, name, fault_types, severity_levels, "
            "meta_data, version) VALUES ($1, $2, 'cwru', '[]', '[]', '{}', 1)",
            dataset_id,
            owner,
        )
        for start in range(0, count, 10_000):
            rows: list[tuple[Any, ...]] = []
            for n in range(start, min(count, start + 10_000)):
                status = rng.choice(STATUSES)
                done = status in ("completed", "failed", "cancelled")
                accuracy = round(rng.uniform(0.5, 0.995), 4)
                metrics = (
                    {
                        "val_accuracy": accuracy,
                        "val_loss": round(1 - accuracy + rng.uniform(0, 0.1), 4),
                    }
                    if status != "pending"
                    else {}
                )
                params = {
                    "lr": rng.choice([1e-4, 3e-4, 1e-3, 3e-3, 1e-2]),
                    "optimizer": rng.choice(["adam", "adamw", "sgd"]),
                    "batch_size": rng.choice([32, 64, 128]),
                }
                created = now - timedelta(minutes=count - n)
                rows.append(
                    (
                        uuid.UUID(int=rng.getrandbits(128), version=4),
                        f"exp-{n:06d}",
                        owner,
                        rng.choice(MODEL_TYPES),
                        dataset_id if n % 10 == 0 else None,
                        status,
                        json.dumps(params),
                        json.dumps(metrics),
                        rng.randint(1, 99) if metrics else None,
                        rng.randint(0, 100),
                        " ".join(rng.sample(WORDS, 3)),
                        sorted(rng.sample(TAGS, rng.randint(0, 3))),
                        created,
                        created + timedelta(hours=1) if done else None,
                    )
                )
            columns = list(zip(*rows, strict=True))
            await conn.execute(
                """
                INSERT INTO experiments.experiments
                    (id, name, owner_id, model_type, dataset_id, status, config, hyperparameters,
                     metrics, best_epoch, total_epochs, notes, tags, created_at, updated_at,
                     ended_at, version)
                SELECT id, name, owner_id, model_type, dataset_id, status, '{}'::jsonb, h::jsonb,
                       m::jsonb, best, total, notes,
                       ARRAY(SELECT jsonb_array_elements_text(t::jsonb))::varchar[],
                       created, created, ended, 1
                FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::text[], $5::uuid[], $6::text[],
                            $7::text[], $8::text[], $9::int[], $10::int[], $11::text[],
                            $12::text[], $13::timestamptz[], $14::timestamptz[])
                    AS r(id, name, owner_id, model_type, dataset_id, status, h, m, best, total,
                         notes, t, created, ended)
                """,
                *[list(c) for c in columns[:11]],
                [json.dumps(t) for t in columns[11]],
                list(columns[12]),
                list(columns[13]),
            )
        # settle before measuring: otherwise autovacuum starts on the new rows mid-benchmark
        await conn.execute("VACUUM (ANALYZE) experiments.experiments")
    finally:
        await conn.close()
    return time.perf_counter() - started


SEARCH_URL = "/api/v1/experiments"
SEARCHES: list[tuple[str, dict[str, Any]]] = [
    ("newest 50 (no filter)", {}),
    ("status = 'completed'", {"filter": "status = 'completed'"}),
    ("status and model_type", {"filter": "status = 'completed' and model_type = 'cnn1d'"}),
    ("metric range", {"filter": "metrics.val_accuracy > 0.95"}),
    (
        "metric range, best first",
        {"filter": "metrics.val_accuracy > 0.95", "order_by": "-metrics.val_accuracy"},
    ),
    ("best val_loss first", {"order_by": "metrics.val_loss"}),
    (
        "OR / NOT / IN / tag",
        {
            "filter": "(model_type in ('cnn1d', 'lstm') or tag = 'baseline') "
            "and not status = 'failed'"
        },
    ),
    ("param = and metric <", {"filter": "params.optimizer = 'adamw' and metrics.val_loss < 0.1"}),
    ("rare: metric > 0.994", {"filter": "metrics.val_accuracy > 0.994"}),
    ("tag, 2 tags", {"filter": "tag = 'pump' and tag = 'gearbox'"}),
    ("name LIKE prefix", {"filter": "name like 'exp-0421%'"}),
    ("created_at range", {"filter": "created_at > '2000-01-01' and created_at < '2100-01-01'"}),
    ("full text q", {"q": "cavitation spectrum"}),
    ("full text + filter", {"q": "bearing", "filter": "metrics.val_accuracy > 0.9"}),
]


async def explain(url: str, principal: Principal, params: dict[str, Any]) -> str:
    """The database's side of a search: EXPLAIN ANALYZE of the exact statement and parameters
    the service sends (execution time, and the first plan node that reads the table)."""
    query, _ordering = search.build_query(principal, search.SearchParams(**params), 50, None)
    engine = create_engine(url, pool_size=1)
    try:
        compiled = query.compile(
            dialect=engine.dialect, compile_kwargs={"render_postcompile": True}
        )
        values = compiled.construct_params()
        processors = compiled._bind_processors
        positional = tuple(
            processors[name](values[name]) if name in processors else values[name]
            for name in compiled.positiontup or ()
        )
        async with engine.connect() as conn:
            await conn.exec_driver_sql("SET plan_cache_mode = force_custom_plan")
            plan = [
                row[0]
                for row in await conn.exec_driver_sql(
                    "EXPLAIN (ANALYZE, COSTS OFF) " + str(compiled), positional
                )
            ]
    finally:
        await engine.dispose()
    took = next(line for line in plan if "Execution Time" in line).split(":")[1].strip()
    scan = next((line.strip(" ->") for line in plan if "Scan" in line), "?")
    return f"{took} ({scan.split(' (')[0]})"


async def bench_search(
    client: Any, url: str, admin_url: str, count: int, repeat: int
) -> dict[str, str]:
    owner = uuid.uuid4()
    seconds = await seed(admin_url, owner, count, uuid.uuid4())
    results = {"seeded": f"{count:,} experiments in {seconds:.1f} s (one INSERT per 10,000 rows)"}
    for role in ("user", "admin"):
        caller = owner if role == "user" else uuid.uuid4()
        headers = identity_headers(caller, role)
        for label, params in SEARCHES:
            results[f"{role}: {label} [db]"] = await explain(url, Principal(caller, role), params)
            for _ in range(3):
                await client.get(SEARCH_URL, params=params, headers=headers)
            latencies = []
            for _ in range(repeat):
                ms, response = await timed(
                    lambda p=params, h=headers: client.get(SEARCH_URL, params=p, headers=h)
                )
                assert response.status_code == 200, response.text
                latencies.append(ms)
            found = len(response.json()["items"])
            results[f"{role}: {label}"] = f"{summary(latencies)}, {found} rows"
    # a deep page: follow cursors 40 pages (2,000 rows) down, then time the next page
    headers = identity_headers(owner)
    cursor = None
    for _ in range(40):
        page = (
            await client.get(
                "/api/v1/experiments",
                params={
                    "order_by": "-metrics.val_accuracy",
                    **({"cursor": cursor} if cursor else {}),
                },
                headers=headers,
            )
        ).json()
        cursor = page["next_cursor"]
    latencies = []
    for _ in range(repeat):
        ms, _r = await timed(
            lambda: client.get(
                "/api/v1/experiments",
                params={"order_by": "-metrics.val_accuracy", "cursor": cursor},
                headers=headers,
            )
        )
        latencies.append(ms)
    results["user: page 41 by -metrics.val_accuracy"] = summary(latencies)
    return results


async def run(args: argparse.Namespace, admin_url: str, bootstrap: str) -> dict[str, str]:
    url, database_admin_url = await prepare_database(admin_url)
    results: dict[str, str] = {}
    async with service_client(url, bootstrap, args.uvicorn) as client:
        results["mode"] = "uvicorn (HTTP over TCP)" if args.uvicorn else "in-process (ASGI)"
        if args.epochs:
            results.update(await bench_logging(client, args.epochs))
        if args.experiments:
            results.update(
                await bench_search(client, url, database_admin_url, args.experiments, args.repeat)
            )
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=500, help="per-epoch requests (0: skip)")
    parser.add_argument("--experiments", type=int, default=100_000, help="seeded (0: skip)")
    parser.add_argument("--repeat", type=int, default=30, help="timed runs per search")
    parser.add_argument("--uvicorn", action="store_true", help="run the service under uvicorn")
    args = parser.parse_args()
    with local_infrastructure() as (admin_url, bootstrap):
        result = asyncio.run(run(args, admin_url, bootstrap))
    print(f"machine: {platform.node()} {os.cpu_count()} cores, Python {platform.python_version()}")
    for key, value in result.items():
        print(f"{key:>44}: {value}")


if __name__ == "__main__":
    main()
