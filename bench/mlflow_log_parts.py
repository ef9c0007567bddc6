"""What each part of an MLflow ``log-batch`` costs PostgreSQL on the SQL path, under load.

Starts the whole local stack, then, with 4 clients each logging one epoch (4 metrics) per
``log-batch`` to its own running run, for ``--seconds`` per phase: replaces the database
function ``mlflow_log_epochs`` by a variant and measures requests/s and the CPU of the
experiments service's PostgreSQL backends per request (psutil, per backend process by
``application_name``; the epoch-events worker's folds of the runs' summaries included). The
variants: the function as migrated (0022: the run's summaries left to the worker), the one
before it (0019: the history summary and the run's row written by every request), and the
current one without the metric log or without the epoch rows. A variant may answer wrongly on
purpose (a part is missing): the stack is thrown away after.

The variants run in ``--rounds`` rounds, each in another order (rotated, every other round
reversed), and the summary gives each variant's median over its rounds: on a shared machine
the load drifts by more than most parts cost, and a fixed order showed a part up to 40 %
cheaper than alternated phases did. ``--only NAME`` (repeatable; the function as migrated
always runs) picks variants by a part of their name.

Each client logs its run's consecutive steps, as a training loop does. Also prints, for the
function as migrated (first round): the WAL written per request (records, bytes, full-page
images), inserted and (HOT) updated rows per table, and the mean time a request spends in the
experiments service (its latency histogram) against the client's.

    uv run python bench/mlflow_log_parts.py [--seconds 8] [--rounds 3] [--only 0019 ...]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import shlex
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import aiohttp
import asyncpg
import psutil
from mlflow_compare import UNLIMITED, machine_info, run_cli, runyard_mlflow_user

from runyard.devstack import Stack
from runyard.shared.db import asyncpg_dsn

MIGRATIONS = (
    Path(__file__).resolve().parent.parent
    / "services/experiments/src/runyard/experiments/migrations/versions"
)
CLIENTS = 4


def _migration(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"migration_{name}", MIGRATIONS / name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def variants() -> dict[str, str]:
    """Each variant's function."""
    full: str = _migration("0022_run_summaries_folded.py").LOG_EPOCHS
    per_request: str = _migration("0019_mlflow_log_metrics_at_logged_epochs.py").LOG_EPOCHS

    def without(sql: str, first: str, next_part: str) -> str:
        start = sql.index(first)
        end = sql.index(next_part, start)
        return sql[:start] + "    skipped AS (SELECT 1),\n" + sql[end:]

    return {
        "full": full,
        "summaries written by every request (migration 0019)": per_request,
        "without the metric log": without(full, "    logged AS (", "    -- the request's values"),
        "without the epoch rows": without(
            full, "    runs AS (", "    -- the metrics of the request's highest"
        ),
    }


def round_order(names: list[str], round_: int) -> list[str]:
    """Round ``round_``'s order: rotated by the round, every other round reversed."""
    shift = round_ % len(names)
    order = names[shift:] + names[:shift]
    return order[::-1] if round_ % 2 else order


async def backend_cpu(admin: asyncpg.Connection, application: str) -> float:
    """CPU seconds used so far by the client backends of ``application``."""
    total = 0.0
    rows = await admin.fetch(
        "SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend'"
        " AND application_name LIKE $1",
        f"{application}%",
    )
    for row in rows:
        try:
            times = psutil.Process(row["pid"]).cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def histogram(text: str, path_part: str) -> tuple[float, float]:
    """(sum, count) of the service's request latency histogram over routes with ``path_part``."""
    total = count = 0.0
    for line in text.splitlines():
        if path_part not in line or not line.startswith("runyard_http_request_duration_seconds"):
            continue
        value = float(line.rsplit(" ", 1)[1])
        if line.startswith("runyard_http_request_duration_seconds_sum"):
            total += value
        elif line.startswith("runyard_http_request_duration_seconds_count"):
            count += value
    return total, count


async def bench(args: argparse.Namespace, stack: Stack) -> None:
    connector = aiohttp.TCPConnector(limit=16)
    async with aiohttp.ClientSession(connector=connector) as session:
        _runyard, mlflow, headers = await runyard_mlflow_user(session, stack.gateway_url)
        runs = [await mlflow.new_target(f"parts-{i}") for i in range(CLIENTS)]
        # each run's own next step, as a training loop sends them (consecutive epochs)
        steps = dict.fromkeys(runs, 0)
        for run in runs:  # each run running, warm
            for _ in range(30):
                steps[run] += 1
                await mlflow.epoch_request(run, steps[run], headers)()
        admin = await asyncpg.connect(asyncpg_dsn(stack.admin_server_url))
        database = await asyncpg.connect(stack.admin_dsn)
        experiments_url = stack.service_urls["experiments"] + "/metrics"
        chosen = {
            name: sql
            for name, sql in variants().items()
            if name == "full" or not args.only or any(part in name for part in args.only)
        }
        measured: dict[str, list[tuple[float, float]]] = {name: [] for name in chosen}
        print("| round | function | requests/s | PostgreSQL (experiments), ms per request |")
        print("|---|---|---|---|")
        for round_, name in (
            (r, name) for r in range(args.rounds) for name in round_order(list(chosen), r)
        ):
            await database.execute(chosen[name])
            await asyncio.sleep(1)
            cpu_before = await backend_cpu(admin, "runyard-experiments")
            wal_before = await database.fetchrow(WAL_STATS)
            tables_before = await database.fetch(TABLE_STATS)
            async with session.get(experiments_url) as response:
                metrics_before = await response.text()
            latencies: list[float] = []
            stop_at = time.monotonic() + args.seconds

            async def client(run: str, stop_at: float, latencies: list[float]) -> None:
                while time.monotonic() < stop_at:
                    steps[run] += 1
                    started = time.perf_counter()
                    await mlflow.epoch_request(run, steps[run], headers)()
                    latencies.append(time.perf_counter() - started)

            await asyncio.gather(*(client(run, stop_at, latencies) for run in runs))
            cpu = await backend_cpu(admin, "runyard-experiments") - cpu_before
            count = len(latencies)
            rate, pg_ms = count / args.seconds, cpu * 1000 / count
            measured[name].append((rate, pg_ms))
            print(f"| {round_ + 1} | {name} | {rate:.0f} | {pg_ms:.2f} |", flush=True)
            if name != "full" or round_ != 0:
                continue
            wal_after = await database.fetchrow(WAL_STATS)
            records, images, wal = (
                float(wal_after[k] - wal_before[k]) for k in ("records", "fpi", "bytes")
            )
            async with session.get(experiments_url) as response:
                metrics_after = await response.text()
            spent = [
                a - b
                for a, b in zip(
                    histogram(metrics_after, "log-batch"),
                    histogram(metrics_before, "log-batch"),
                    strict=True,
                )
            ]
            await asyncio.sleep(1)  # table statistics are reported when a transaction ends
            details = [
                f"  WAL per request: {records / count:.1f} records, {wal / count:,.0f} bytes,"
                f" {images / count:.4f} full-page images",
                f"  mean latency: client {sum(latencies) / count * 1000:.1f} ms, in the "
                f"experiments service {spent[0] / max(spent[1], 1) * 1000:.1f} ms",
            ]
            before = {row["relname"]: row for row in tables_before}
            for row in await database.fetch(TABLE_STATS):
                old = before.get(row["relname"])
                if old is None:
                    continue
                inserted = row["n_tup_ins"] - old["n_tup_ins"]
                updated = row["n_tup_upd"] - old["n_tup_upd"]
                hot = row["n_tup_hot_upd"] - old["n_tup_hot_upd"]
                if inserted or updated:
                    details.append(
                        f"  {row['relname']}: {inserted / count:.2f} inserted, "
                        f"{updated / count:.2f} updated ({hot / count:.2f} HOT) per request"
                    )
            print("\n".join(details), flush=True)
        print(f"\nmedians over {args.rounds} round(s), each variant against the full function:")
        print(
            "| function | requests/s | PostgreSQL (experiments), ms per request | difference, ms |"
        )
        print("|---|---|---|---|")
        full_ms = statistics.median(ms for _, ms in measured["full"])
        for name, phases in measured.items():
            rate = statistics.median(r for r, _ in phases)
            pg_ms = statistics.median(ms for _, ms in phases)
            print(f"| {name} | {rate:.0f} | {pg_ms:.2f} | {pg_ms - full_ms:+.2f} |")
        await admin.close()
        await database.close()


#: WAL written so far, by every process of the cluster (nothing else writes during a variant)
WAL_STATS = "SELECT wal_records AS records, wal_fpi AS fpi, wal_bytes AS bytes FROM pg_stat_wal"
TABLE_STATS = (
    "SELECT relname, n_tup_ins, n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables"
    " WHERE schemaname = 'experiments'"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="per phase")
    parser.add_argument("--rounds", type=int, default=3, help="each variant once per round")
    parser.add_argument(
        "--only", action="append", default=[], help="variants whose name holds this (repeatable)"
    )
    args = parser.parse_args()
    info: dict[str, Any] = machine_info()
    print(f"command: uv run python bench/mlflow_log_parts.py {shlex.join(sys.argv[1:])}")
    print(f"machine: {info}; {datetime.now(UTC):%Y-%m-%d %H:%M} UTC", flush=True)
    with (
        tempfile.TemporaryDirectory(prefix="log-parts-") as directory,
        Stack.isolated(Path(directory), extra_env=UNLIMITED) as stack,
    ):
        asyncio.run(bench(args, stack))


if __name__ == "__main__":
    run_cli(main)
