"""What one call of ``mlflow_log_epochs`` costs PostgreSQL alone, without the rest of the stack.

Starts the whole local stack, makes one running MLflow run through the gateway, then calls the
database function directly on one connection, ``--calls`` times per variant and round (one epoch
of 4 metrics per call, the run's consecutive epochs), with the stack idle. Prints the CPU that
connection's backend used per call (psutil) and the wall time, per round and as the median of
the rounds. Variants (``bench/mlflow_log_parts.py``'s): the full function, without the history
summary, with history level 0 only, each with ``synchronous_commit`` off (no wait for the WAL
flush), and the full function with it on, as the services run. ``bench/mlflow_log_parts.py``
measures the same parts under load, where contention for the cores adds its share.

    uv run python bench/mlflow_log_function.py [--calls 1000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import psutil
from mlflow_compare import UNLIMITED, machine_info, run_cli, runyard_mlflow_user
from mlflow_log_parts import variants

from runyard.devstack import Stack

CALL = (
    "SELECT experiments.mlflow_log_epochs($1::uuid, NULL, $2::text[], $3::float8[],"
    " $4::bigint[], $5::bigint[], now())"
)
KEYS = ["train_loss", "val_loss", "train_accuracy", "val_accuracy"]


async def bench(args: argparse.Namespace, stack: Stack) -> None:
    async with aiohttp.ClientSession() as session:
        _runyard, mlflow, headers = await runyard_mlflow_user(session, stack.gateway_url)
        run = await mlflow.new_target("function")
        await mlflow.epoch_request(run, 0, headers)()  # the run is running
    found = variants()
    plan = {
        "full": (found["full"], "off"),
        "without the history summary": (found["without the history summary"], "off"),
        "history level 0 only": (found["history level 0 only"], "off"),
        "full, synchronous commit on": (found["full"], "on"),
    }
    connection = await asyncpg.connect(stack.admin_dsn)
    backend = psutil.Process(await connection.fetchval("SELECT pg_backend_pid()"))
    run_id, epoch = uuid.UUID(run), 1
    cpu: dict[str, list[float]] = {name: [] for name in plan}
    wall: dict[str, list[float]] = {name: [] for name in plan}
    for round_ in range(1, args.rounds + 1):
        for name, (sql, synchronous_commit) in plan.items():
            await connection.execute(sql)
            await connection.execute(f"SET synchronous_commit = {synchronous_commit}")
            statement = await connection.prepare(CALL)
            cpu_before, started = sum(backend.cpu_times()[:2]), time.perf_counter()
            for _ in range(args.calls):
                now_ms = int(time.time() * 1000)
                values = [0.5 + epoch * 1e-3] * len(KEYS)
                done = await statement.fetchval(
                    run_id, KEYS, values, [now_ms] * len(KEYS), [epoch] * len(KEYS)
                )
                if not done:
                    raise RuntimeError(f"the function did not take epoch {epoch}")
                epoch += 1
            cpu[name].append((sum(backend.cpu_times()[:2]) - cpu_before) * 1000 / args.calls)
            wall[name].append((time.perf_counter() - started) * 1000 / args.calls)
            print(
                f"round {round_}, {name}: {cpu[name][-1]:.3f} ms CPU, {wall[name][-1]:.3f} ms"
                " wall per call",
                flush=True,
            )
    await connection.close()
    print()
    print("| function | backend CPU per call, ms: median (rounds) | wall per call, ms: median |")
    print("|---|---|---|")
    for name in plan:
        rounds = ", ".join(f"{v:.2f}" for v in cpu[name])
        print(
            f"| {name} | {statistics.median(cpu[name]):.2f} ({rounds}) |"
            f" {statistics.median(wall[name]):.2f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1000, help="per variant and round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    info: dict[str, Any] = machine_info()
    print(f"command: uv run python bench/mlflow_log_function.py {shlex.join(sys.argv[1:])}")
    print(f"machine: {info}; {datetime.now(UTC):%Y-%m-%d %H:%M} UTC", flush=True)
    with (
        tempfile.TemporaryDirectory(prefix="log-function-") as directory,
        Stack.isolated(Path(directory), extra_env=UNLIMITED) as stack,
    ):
        asyncio.run(bench(args, stack))


if __name__ == "__main__":
    run_cli(main)
