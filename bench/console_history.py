"""Benchmark of the downsampled history read behind the console's charts.

One experiment with N epochs (default 1,000,000) x 4 metrics (train/val loss and accuracy, with
a spike every 9,973 epochs) seeded with one INSERT ... SELECT generate_series, its block
summaries (``history_blocks``) computed by the service's rebuild; then
``GET /api/v1/experiments/{id}/history?buckets=1000`` timed as the owner (server time: the
service in-process over ASGI, no network, no gateway) with the CPU per read of the service and
of PostgreSQL, reads from epoch 1 and zoomed (1 % and 10 % of the range), the same read
aggregating the runs as before the summaries (same buckets; the answers must be equal) and that
aggregate statement alone (EXPLAIN ANALYZE). Checks that every spike survives at 1,000 buckets.

Last, the write cost of keeping the summary: per-epoch requests and 1,000-epoch requests with the
upkeep and without it (switched off in-process), CPU of the service and PostgreSQL per request.

Usage: uv run python bench/console_history.py [--epochs 1000000] [--buckets 1000] [--repeat 30]
       [--write-epochs 400]
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
from pathlib import Path
from typing import Any

import asyncpg
import psutil

from runyard.experiments.config import Settings
from runyard.experiments.main import create_app
from runyard.experiments.tracking.repository import history
from runyard.shared.db import asyncpg_dsn, create_engine, create_sessionmaker
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


async def fill_summary(url: str, experiment: uuid.UUID) -> float:
    """The seed wrote the runs around the write path: compute their block summaries with the
    service's own rebuild (what migration 0006 does for existing runs); seconds taken."""
    engine = create_engine(url, pool_size=1)
    try:
        started = time.perf_counter()
        async with create_sessionmaker(engine, schema="experiments")() as session:
            await history.rebuild_summary(session, experiment)
            await session.commit()
        return time.perf_counter() - started
    finally:
        await engine.dispose()


async def sizes(admin_url: str) -> str:
    conn = await asyncpg.connect(asyncpg_dsn(admin_url))
    try:
        await conn.execute("VACUUM ANALYZE experiments.history_blocks")
        rows = await conn.fetchval("SELECT count(*) FROM experiments.history_blocks")
        summary_mb, runs_mb = await conn.fetchrow(
            "SELECT pg_total_relation_size('experiments.history_blocks') / 1e6,"
            " pg_total_relation_size('experiments.training_runs') / 1e6"
        )
    finally:
        await conn.close()
    return f"{rows:,} / {summary_mb:.0f} MB ({runs_mb:.0f} MB)"


async def postgres_server(admin_url: str) -> psutil.Process | None:
    """The PostgreSQL postmaster, to count the CPU of its backends; None when the server is not
    on this machine or not ours to inspect."""
    conn = await asyncpg.connect(asyncpg_dsn(admin_url))
    try:
        data_directory = await conn.fetchval("SHOW data_directory")
    finally:
        await conn.close()
    try:
        pid = int((Path(data_directory) / "postmaster.pid").read_text().split()[0])
        return psutil.Process(pid)
    except (OSError, ValueError, psutil.Error):
        return None


def server_processes(server: psutil.Process | None) -> list[psutil.Process]:
    """The postmaster and its backends now (the pooled connections live through a phase)."""
    if server is None:
        return []
    try:
        return [server, *server.children(recursive=True)]
    except psutil.Error:
        return []


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


async def timed(
    call: Any, repeat: int, server: psutil.Process | None
) -> tuple[list[float], float, float]:
    """Wall ms of each call, and the CPU ms per call of this process (the service in-process)
    and of the database server."""
    own = psutil.Process(os.getpid())
    await call()  # the backends of the phase exist before it is measured
    database = server_processes(server)
    app_before, db_before = cpu_seconds([own]), cpu_seconds(database)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        await call()
        times.append((time.perf_counter() - started) * 1000)
    app_cpu = (cpu_seconds([own]) - app_before) * 1000 / repeat
    db_cpu = (cpu_seconds(database) - db_before) * 1000 / repeat
    return times, app_cpu, db_cpu


async def run(args: argparse.Namespace, admin_url: str, bootstrap: str) -> dict[str, Any]:
    url, admin_db = await prepare_database(admin_url)
    owner = uuid.uuid4()
    experiment = await seed(admin_db, owner, args.epochs)
    result: dict[str, Any] = {"epochs x metrics": f"{args.epochs:,} x {len(METRICS)}"}
    result["block summaries computed (rebuild)"] = f"{await fill_summary(url, experiment):.1f} s"
    result["summary rows / size (runs' size)"] = await sizes(admin_db)
    database = await postgres_server(admin_db)
    headers = identity_headers(owner)
    settings = Settings(
        environment="test",
        database_url=url,
        kafka_bootstrap_servers=bootstrap,
        log_level="WARNING",
        log_json=True,
        run_workers=False,
    )
    path = f"/api/v1/experiments/{experiment}/history"
    params: list[tuple[str, str | int]] = [("buckets", args.buckets)]
    params += [("metric", m) for m in METRICS]
    async with running_app(create_app(settings)) as client:
        response = None

        async def full() -> None:
            nonlocal response
            response = await client.get(path, params=params, headers=headers)
            assert response.status_code == 200, response.text

        for _ in range(3):  # warm the cache and the connection pool
            await full()
        times, app_cpu, db_cpu = await timed(full, args.repeat, database)
        assert response is not None
        body = response.json()
        spikes = sum(1 for v in body["series"]["val_loss"]["max"] if v is not None and v > 40)
        expected = len(range(0, args.epochs, SPIKE_EVERY))
        result[f"history, {args.buckets} buckets"] = summary(times)
        result["  CPU per read: service / PostgreSQL"] = f"{app_cpu:.1f} / {db_cpu:.1f} ms"
        result["buckets returned / bytes"] = f"{len(body['epoch'])} / {len(response.content):,}"
        result["spikes kept (max > 40)"] = f"{spikes} of {expected}"
        ranges: list[tuple[str, list[tuple[str, str | int]]]] = [
            ("from epoch 1 (the range starts inside a block)", [("from_epoch", 1)]),
            (
                "zoomed to 1 % of the range",
                [
                    ("from_epoch", args.epochs // 2),
                    ("to_epoch", args.epochs // 2 + args.epochs // 100),
                ],
            ),
            (
                "zoomed to 10 % of the range",
                [
                    ("from_epoch", args.epochs // 3),
                    ("to_epoch", args.epochs // 3 + args.epochs // 10),
                ],
            ),
        ]
        for label, extra in ranges:

            async def read(extra: list[tuple[str, str | int]] = extra) -> None:
                found = await client.get(path, params=[*params, *extra], headers=headers)
                assert found.status_code == 200, found.text

            zoomed, app_cpu, db_cpu = await timed(read, args.repeat, database)
            result[label] = f"{summary(zoomed)}, CPU {app_cpu:.1f} / {db_cpu:.1f} ms"
        if args.write_epochs:
            result.update(await write_cost(client, headers, args, database))
    result["the same read from the runs (no summary)"] = await without_summary(
        url, experiment, args, body, database
    )
    result["runs aggregate statement alone (EXPLAIN ANALYZE)"] = await explain(
        admin_db, experiment, args
    )
    return result


async def write_cost(
    client: Any, headers: dict[str, str], args: argparse.Namespace, server: psutil.Process | None
) -> dict[str, str]:
    """What keeping the summary costs the epoch write path: one epoch per request (4 metrics)
    and one request of 1,000 epochs, with the upkeep and with it switched off (the service's
    ``record_runs`` replaced by a no-op), alternating rounds so that the machine's load falls
    on both alike. Wall ms and CPU ms per request (service / PostgreSQL)."""

    async def skip(*_args: Any, **_kwargs: Any) -> None:
        return None

    keep = history.record_runs
    rounds = 4
    per_round = max(1, args.write_epochs // rounds)
    single: dict[bool, tuple[list[float], float, float]] = {
        True: ([], 0.0, 0.0),
        False: ([], 0.0, 0.0),
    }
    batch: dict[bool, tuple[list[float], float, float]] = {
        True: ([], 0.0, 0.0),
        False: ([], 0.0, 0.0),
    }

    def run_values(epoch: int) -> dict[str, Any]:
        return {
            "epoch": epoch,
            "train_loss": 1 / (epoch + 1),
            "val_loss": 1.1 / (epoch + 1),
            "train_accuracy": 0.5 + epoch / 1e7,
            "val_accuracy": 0.45 + epoch / 1e7,
        }

    try:
        for round_ in range(rounds):
            for upkeep in (True, False) if round_ % 2 == 0 else (False, True):
                history.record_runs = keep if upkeep else skip
                created = await client.post(
                    "/api/v1/experiments", json={"name": f"w-{uuid.uuid4().hex}"}, headers=headers
                )
                runs_path = f"/api/v1/experiments/{created.json()['id']}/runs"
                epochs = iter(range(10**6))

                async def one(runs_path: str = runs_path, epochs: Any = epochs) -> None:
                    body = {"runs": [run_values(next(epochs))]}
                    answer = await client.post(runs_path, json=body, headers=headers)
                    assert answer.status_code in (200, 201), answer.text

                async def thousand(runs_path: str = runs_path, epochs: Any = epochs) -> None:
                    body = {"runs": [run_values(next(epochs)) for _ in range(1000)]}
                    answer = await client.post(runs_path, json=body, headers=headers)
                    assert answer.status_code in (200, 201), answer.text

                for store, call, repeat in ((single, one, per_round), (batch, thousand, 3)):
                    times, app_cpu, db_cpu = await timed(call, repeat, server)
                    before = store[upkeep]
                    store[upkeep] = (
                        before[0] + times,
                        before[1] + app_cpu / rounds,
                        before[2] + db_cpu / rounds,
                    )
    finally:
        history.record_runs = keep
    found = {}
    for label, store in (("one epoch a request", single), ("1,000 epochs a request", batch)):
        for upkeep in (False, True):
            times, app_cpu, db_cpu = store[upkeep]
            name = f"write, {label}, {'with' if upkeep else 'without'} the summary"
            found[name] = f"{summary(times)}, CPU {app_cpu:.2f} / {db_cpu:.2f} ms"
    return found


async def without_summary(
    url: str,
    experiment: uuid.UUID,
    args: argparse.Namespace,
    body: dict[str, Any],
    database: psutil.Process | None,
) -> str:
    """The read as it was before the block summaries (every run aggregated, same buckets),
    in-process through the repository; and the check that both answers are the same."""
    engine = create_engine(url, pool_size=1)
    sessionmaker = create_sessionmaker(engine, schema="experiments")
    found: history.History | None = None

    async def read() -> None:
        nonlocal found
        async with sessionmaker() as session:
            found = await history.downsampled_history(
                session,
                experiment,
                metrics=METRICS,
                buckets=args.buckets,
                from_epoch=None,
                to_epoch=None,
                use_summary=False,
            )

    try:
        await read()
        times, app_cpu, db_cpu = await timed(read, max(3, args.repeat // 6), database)
    finally:
        await engine.dispose()
    assert found is not None
    same = found.epoch == body["epoch"] and all(
        [getattr(found.series[m], k) for k in ("min", "max", "last")]
        == [body["series"][m][k] for k in ("min", "max", "last")]
        for m in METRICS
    )
    return f"{summary(times)}, CPU {app_cpu:.1f} / {db_cpu:.1f} ms, same answer: {same}"


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
    parser.add_argument(
        "--write-epochs", type=int, default=400, help="per-epoch writes timed (0: skip)"
    )
    args = parser.parse_args()
    with local_infrastructure() as (admin_url, bootstrap):
        result = asyncio.run(run(args, admin_url, bootstrap))
    print(f"machine: {platform.node()} {os.cpu_count()} cores, Python {platform.python_version()}")
    for key, value in result.items():
        print(f"{key:>34}: {value}")


if __name__ == "__main__":
    main()
