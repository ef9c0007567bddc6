"""Benchmark of MLflow's search-runs on Runyard (the function behind
``/api/2.0/mlflow/runs/search``, called in-process, no HTTP).

Seeds N runs (default 100,000) of one owner in the virtual Default experiment, plus N/5 runs of
another owner in a project (searched as a viewer), with INSERT ... SELECT generate_series:
latest metrics, params (strings and Runyard-native numbers), MLflow tags, statuses and start
times. Then times filtered searches with max_results 1000 (and one with 100), and replays each
search's statements under EXPLAIN ANALYZE: the database's time and plans, apart from the
client's decoding of the rows.

Usage: uv run python bench/mlflow_search_bench.py [--runs 100000] [--repeat 20]
Uses DATABASE_URL when set, else starts an embedded PostgreSQL (deleted on exit).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import event

from runyard.experiments.mlflow import search
from runyard.shared.db import asyncpg_dsn, create_engine, create_sessionmaker
from runyard.shared.identity import Principal
from runyard.shared.testing import (
    embedded_postgres_server,
    embedded_postgres_url,
    migrated_database,
)

#: (label, filter, order_by, max_results); "viewer:" labels search the other owner's project of
#: N/5 runs as a viewer
SEARCHES: list[tuple[str, str | None, list[str], int]] = [
    ("no filter (start_time DESC)", None, [], 1000),
    ("metrics.acc > 0.9", "metrics.acc > 0.9", [], 1000),
    ("metrics.acc > 0.99 (rare)", "metrics.acc > 0.99", [], 1000),
    ("params.optimizer = 'adam'", "params.optimizer = 'adam'", [], 1000),
    ("params.lr = '0.001' (number)", "params.lr = '0.001'", [], 1000),
    ("tags.team = 'vision'", "tags.team = 'vision'", [], 1000),
    ("status = 'FINISHED'", "attributes.status = 'FINISHED'", [], 1000),
    ("run_name LIKE 'run-0421%'", "attributes.run_name LIKE 'run-0421%'", [], 1000),
    ("start_time > ...", "attributes.start_time > 1767225600000", [], 1000),
    (
        "metric AND param AND tag",
        "metrics.acc > 0.5 AND params.optimizer = 'sgd' AND tags.team = 'nlp'",
        [],
        1000,
    ),
    ("order by metrics.acc DESC", None, ["metrics.acc DESC"], 1000),
    ("order by metrics.acc DESC (100)", None, ["metrics.acc DESC"], 100),
    ("order by params.optimizer, acc", None, ["params.optimizer", "metrics.acc DESC"], 1000),
    ("tags.team IS NULL", "tags.team IS NULL", [], 1000),
    ("viewer: project, no filter", None, [], 1000),
    ("viewer: project, metrics.acc > 0.9", "metrics.acc > 0.9", [], 1000),
]


@contextlib.contextmanager
def postgres() -> Iterator[str]:
    configured = os.environ.get("DATABASE_URL")
    if configured:
        yield configured.replace("postgresql://", "postgresql+asyncpg://", 1)
        return
    pgdata = Path(tempfile.mkdtemp(prefix="runyard-pg-"))
    server = embedded_postgres_server(pgdata, cleanup_mode="delete")
    try:
        yield embedded_postgres_url(server)
    finally:
        server.cleanup()
        shutil.rmtree(pgdata, ignore_errors=True)


SEED = """
INSERT INTO experiments.experiments
    (id, name, owner_id, project_id, status, config, hyperparameters, metrics, kv_tags, total_epochs,
     tags, created_at, updated_at, started_at, ended_at, version)
SELECT gen_random_uuid(), $2 || lpad(n::text, 6, '0'), $1, $4::uuid,
       (ARRAY['completed','completed','completed','failed','cancelled','running','pending'])
           [1 + n % 7],
       '{}'::jsonb,
       jsonb_build_object('optimizer', (ARRAY['adam','adamw','sgd'])[1 + n % 3],
                          'lr', (ARRAY[0.0001, 0.001, 0.01])[1 + (n / 3) % 3],
                          'batch_size', ((ARRAY['32','64','128'])[1 + n % 3])),
       CASE WHEN n % 7 = 6 THEN '{}'::jsonb ELSE
            jsonb_build_object('acc', round((random() * 0.5 + 0.5)::numeric, 4),
                               'loss', round(random()::numeric, 4)) END,
       CASE WHEN n % 4 = 0 THEN '{}'::jsonb ELSE
            jsonb_build_object('mlflow.runName', 'run-' || lpad(n::text, 6, '0'),
                               'mlflow.user', 'alice',
                               'team', (ARRAY['vision','audio','nlp'])[1 + n % 3]) END,
       0, '{}',
       timestamptz '2026-01-01' + n * interval '1 minute',
       timestamptz '2026-01-01' + n * interval '1 minute',
       CASE WHEN n % 7 = 6 THEN NULL ELSE timestamptz '2026-01-01' + n * interval '1 minute' END,
       NULL, 1
FROM generate_series(1, $3) AS n
"""


async def seed(
    admin_url: str, owner: uuid.UUID, other: uuid.UUID, project: uuid.UUID, runs: int
) -> float:
    conn = await asyncpg.connect(asyncpg_dsn(admin_url))
    started = time.perf_counter()
    try:
        await conn.execute(SEED, owner, "run-", runs, None)
        await conn.execute(
            "INSERT INTO experiments.projects (id, owner_id, name, tags, lifecycle_stage, version)"
            " VALUES ($1, $2, 'shared', '{}', 'active', 1)",
            project,
            other,
        )
        await conn.execute(SEED, other, "other-", runs // 5, project)
        await conn.execute("VACUUM (ANALYZE) experiments.experiments")
    finally:
        await conn.close()
    return time.perf_counter() - started


@contextlib.contextmanager
def recorded(engine: Any) -> Iterator[list[tuple[str, Any]]]:
    """The statements (and parameters) the engine sends meanwhile."""
    statements: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        statements.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)


async def replay(engine: Any, statements: list[tuple[str, Any]]) -> str:
    """The database's side of a search: its statements again in one transaction, each SELECT
    under EXPLAIN ANALYZE: the summed execution time and each query's first scan node."""
    total = 0.0
    scans = []
    async with engine.connect() as conn:
        for statement, parameters in statements:
            if not statement.lstrip().upper().startswith("SELECT") or "set_config" in statement:
                await conn.exec_driver_sql(statement, parameters)
                continue
            plan = [
                row[0]
                for row in await conn.exec_driver_sql(
                    "EXPLAIN (ANALYZE, COSTS OFF) " + statement, parameters
                )
            ]
            took = next(line for line in plan if "Execution Time" in line)
            total += float(took.split(":")[1].strip().split()[0])
            scan = next((line.strip(" ->") for line in plan if "Scan" in line), "?")
            scans.append(scan.split(" (")[0].replace(" on experiments", ""))
        await conn.rollback()
    return f"{total:.1f} ms in {len(scans)} queries: " + "; ".join(scans)


async def run(args: argparse.Namespace, admin_url: str) -> dict[str, str]:
    name = f"bench_mlsearch_{uuid.uuid4().hex[:8]}"
    url, database_admin_url = await migrated_database(
        admin_url, "runyard.experiments", "experiments", name=name, password="bench-mlflow"
    )
    owner, other, project = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    seconds = await seed(database_admin_url, owner, other, project, args.runs)
    results = {"seeded": f"{args.runs:,} + {args.runs // 5:,} runs in {seconds:.1f} s"}
    principal = Principal(owner, "user", "alice")
    viewer = Principal(uuid.uuid4(), "viewer", "vera")
    engine = create_engine(url, pool_size=2)
    sessions = create_sessionmaker(engine, schema="experiments")
    try:
        for label, filter, order_by, limit in SEARCHES:
            latencies: list[float] = []
            found = 0
            for i in range(args.repeat + 2):
                async with sessions() as session:
                    with recorded(engine) as statements:
                        started = time.perf_counter()
                        as_viewer = label.startswith("viewer:")
                        rows, _token = await search.search_runs(
                            session,
                            principal=viewer if as_viewer else principal,
                            experiment_ids=[project] if as_viewer else [None],
                            filter=filter,
                            view_type="ACTIVE_ONLY",
                            max_results=limit,
                            order_by=order_by,
                            page_token=None,
                        )
                        elapsed = (time.perf_counter() - started) * 1000
                    if i >= 2:
                        latencies.append(elapsed)
                found = len(rows)
            db = await replay(engine, statements)
            results[label] = (
                f"min {min(latencies):.1f} / p50 {statistics.median(latencies):.1f} ms, "
                f"{found} rows; db {db}"
            )
        # a deep offset page: rows 20,000-20,999 of the default order
        latencies = []
        token = search.page_token(20_000)
        for _ in range(args.repeat):
            async with sessions() as session:
                started = time.perf_counter()
                await search.search_runs(
                    session,
                    principal=principal,
                    experiment_ids=[None],
                    filter=None,
                    view_type="ACTIVE_ONLY",
                    max_results=1000,
                    order_by=[],
                    page_token=token,
                )
                latencies.append((time.perf_counter() - started) * 1000)
        results["page at offset 20,000"] = (
            f"min {min(latencies):.1f} / p50 {statistics.median(latencies):.1f} ms"
        )
    finally:
        await engine.dispose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    with postgres() as admin_url:
        results = asyncio.run(run(args, admin_url))
    print(f"machine: {platform.node()} {os.cpu_count()} cores, Python {platform.python_version()}")
    for key, value in results.items():
        print(f"{key:>34}: {value}")


if __name__ == "__main__":
    main()
