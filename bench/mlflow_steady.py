"""Runyard's MLflow API under a sustained training loop: 4 clients send one ``log-batch`` (one
epoch of 4 metrics) at a time to their own run for ``--seconds``, the way
``bench/mlflow_compare.py``'s concurrent phase does, but for long enough to reach a steady state.

Prints, per ``--window`` seconds, the requests per second and PostgreSQL's CPU per request (all
backends of the cluster, psutil), then the tables the load wrote to (``pg_stat_user_tables``:
rows inserted, updated, HOT-updated, dead, and their size on disk). ``mlflow_compare.py``'s short
phases (300 epochs, under 2 s each) start with fresh run rows and without the previous phase's
background work; this shows how the rate and the cost per request move as a run grows.

``--vacuum-every N`` also runs ``VACUUM experiments.experiments`` every N seconds (its CPU counted
with PostgreSQL's): the runs' rows take a new, non-HOT version with every epoch, and the local
stack's autovacuum looks at most every 5 minutes.

    uv run python bench/mlflow_steady.py [--seconds 60] [--window 5] [--clients 4]
        [--vacuum-every 0]
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import psutil
from mlflow_compare import UNLIMITED, machine_info, run_cli, runyard_mlflow_user

from runyard.devstack import Stack

TABLES = """
SELECT schemaname || '.' || relname AS "table", n_tup_ins, n_tup_upd, n_tup_hot_upd, n_dead_tup,
       n_live_tup, pg_total_relation_size(relid) AS bytes
FROM pg_stat_user_tables
WHERE n_tup_ins + n_tup_upd > 1000
ORDER BY n_tup_ins + n_tup_upd DESC
"""


def postgres_cpu_s() -> float:
    """User and system CPU seconds of every PostgreSQL process now running."""
    total = 0.0
    for process in psutil.process_iter(["cmdline"]):
        try:
            if " ".join(process.info["cmdline"] or []).startswith("postgres"):
                times = process.cpu_times()
                total += times.user + times.system
        except psutil.Error:
            continue
    return total


async def vacuum_runs(dsn: str, every: float, deadline: float) -> int:
    """``VACUUM experiments.experiments`` every ``every`` seconds until ``deadline``; how often."""
    connection = await asyncpg.connect(dsn)
    done = 0
    try:
        while time.monotonic() + every < deadline:
            await asyncio.sleep(every)
            await connection.execute("VACUUM experiments.experiments")
            done += 1
    finally:
        await connection.close()
    return done


async def bench(args: argparse.Namespace, stack: Stack) -> None:
    async with aiohttp.ClientSession() as session:
        _runyard, mlflow, _headers = await runyard_mlflow_user(session, stack.gateway_url)
        runs = [await mlflow.new_target(f"steady{i}") for i in range(args.clients)]
        headers = await mlflow.headers()
        sent = 0
        deadline = time.monotonic() + args.seconds

        async def client(run: str) -> None:
            nonlocal sent
            epoch = 0
            while time.monotonic() < deadline:
                await mlflow.epoch_request(run, epoch, headers)()
                epoch += 1
                sent += 1

        tasks = [asyncio.create_task(client(run)) for run in runs]
        vacuum = (
            asyncio.create_task(vacuum_runs(stack.admin_dsn, args.vacuum_every, deadline))
            if args.vacuum_every > 0
            else None
        )
        print("| seconds | requests/s | PostgreSQL CPU per request, ms |")
        print("|---|---|---|")
        started = before_at = time.monotonic()
        before_sent, before_cpu = 0, postgres_cpu_s()
        while not all(task.done() for task in tasks):
            await asyncio.wait(tasks, timeout=args.window)
            now, cpu, done = time.monotonic(), postgres_cpu_s(), sent
            if done > before_sent:
                print(
                    f"| {before_at - started:.0f}-{now - started:.0f} |"
                    f" {(done - before_sent) / (now - before_at):.0f} |"
                    f" {(cpu - before_cpu) * 1000 / (done - before_sent):.3f} |",
                    flush=True,
                )
            before_at, before_sent, before_cpu = now, done, cpu
        await asyncio.gather(*tasks)
        if vacuum is not None:
            print(f"\nVACUUM of the runs' table: {await vacuum} times")
    print(f"\n{sent} requests, {sent / (time.monotonic() - started):.0f} a second on average\n")
    connection = await asyncpg.connect(stack.admin_dsn)
    try:
        rows = await connection.fetch(TABLES)
    finally:
        await connection.close()
    print("| table | inserted | updated | HOT-updated | dead | live | MB |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['table']} | {row['n_tup_ins']} | {row['n_tup_upd']} | {row['n_tup_hot_upd']}"
            f" | {row['n_dead_tup']} | {row['n_live_tup']} | {row['bytes'] / 2**20:.1f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--window", type=float, default=5.0, help="seconds per printed line")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument(
        "--vacuum-every", type=float, default=0.0, help="seconds between VACUUMs (0: none)"
    )
    args = parser.parse_args()
    info: dict[str, Any] = machine_info()
    print(f"command: uv run python bench/mlflow_steady.py {shlex.join(sys.argv[1:])}")
    print(f"machine: {info}; {datetime.now(UTC):%Y-%m-%d %H:%M} UTC", flush=True)
    with (
        tempfile.TemporaryDirectory(prefix="mlflow-steady-") as directory,
        Stack.isolated(Path(directory), extra_env=UNLIMITED) as stack,
    ):
        asyncio.run(bench(args, stack))


if __name__ == "__main__":
    run_cli(main)
