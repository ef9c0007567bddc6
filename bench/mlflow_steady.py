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

Also prints the WAL flushes per request (every service's commits). ``--waits`` also samples
``pg_stat_activity`` every 10 ms (``--waits-every``) during the loop and prints what the active
backends were doing, on average (running, or waiting: for the WAL's flush, a lock, the client),
by statement; and, per process group and request, the time its threads ran on a core, the time
they waited, runnable, for one, and how many times they were put on one (Linux's schedstat). The
sampling costs CPU too (printed). ``--set NAME=VALUE`` (repeatable) changes a PostgreSQL setting
(``ALTER SYSTEM`` and a reload) before the loop, for what-if runs: the stack is thrown away after.

    uv run python bench/mlflow_steady.py [--seconds 60] [--window 5] [--clients 4]
        [--vacuum-every 0] [--waits] [--waits-every 0.01] [--set commit_delay=200 ...]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass, field
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


#: what each active client backend of the database is doing (not the sampler itself)
ACTIVITY = """
SELECT coalesce(wait_event_type || ': ' || wait_event, 'running') AS doing,
       regexp_replace(left(query, 48), '\\s+', ' ', 'g') AS statement
FROM pg_stat_activity
WHERE backend_type = 'client backend' AND datname = current_database()
  AND pid <> pg_backend_pid() AND state = 'active'
"""
#: WAL flushes so far (PostgreSQL 18 counts them in pg_stat_io)
FLUSHES = "SELECT coalesce(sum(fsyncs), 0) FROM pg_stat_io WHERE object = 'wal'"


@dataclass
class Activity:
    """What ``sample_activity`` saw: how often each (what a backend did, statement), in how many
    samples, and the CPU seconds the sampling cost (its backend and this process)."""

    seen: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter)
    samples: int = 0
    cost_s: float = 0.0


async def sample_activity(dsn: str, deadline: float, every: float) -> Activity:
    """``ACTIVITY`` every ``every`` seconds until ``deadline``."""
    connection = await asyncpg.connect(dsn)
    found = Activity()
    backend = psutil.Process(await connection.fetchval("SELECT pg_backend_pid()"))
    here = psutil.Process()
    cost_before = sum(backend.cpu_times()[:2])
    try:
        statement = await connection.prepare(ACTIVITY)
        while time.monotonic() < deadline:
            started = sum(here.cpu_times()[:2])
            for row in await statement.fetch():
                found.seen[(row["doing"], row["statement"])] += 1
            found.samples += 1
            found.cost_s += sum(here.cpu_times()[:2]) - started
            await asyncio.sleep(every)
        found.cost_s += sum(backend.cpu_times()[:2]) - cost_before
    finally:
        await connection.close()
    return found


def print_activity(activity: Activity, sent: int) -> None:
    """The average number of active backends per (what they did, statement), most first."""
    seen, samples = activity.seen, activity.samples
    print(
        f"Active backends, on average over {samples} samples of pg_stat_activity (the sampling"
        f" cost {activity.cost_s * 1000 / max(sent, 1):.3f} ms of CPU per request, in its"
        " backend and this process):\n"
    )
    print("| backends | doing | statement |")
    print("|---|---|---|")
    for (doing, statement), count in seen.most_common(12):
        print(f"| {count / max(samples, 1):.3f} | {doing} | `{statement.strip()}` |")


async def apply_settings(dsn: str, settings: list[str]) -> None:
    """``ALTER SYSTEM SET`` each ``NAME=VALUE`` and reload the configuration."""
    connection = await asyncpg.connect(dsn)
    try:
        for setting in settings:
            name, _, value = setting.partition("=")
            if not name.isidentifier() or not value:
                raise SystemExit(f"--set wants NAME=VALUE, not {setting!r}")
            await connection.execute(f"ALTER SYSTEM SET {name} = '{value}'")
        await connection.execute("SELECT pg_reload_conf()")
        await asyncio.sleep(0.5)
        for setting in settings:
            name = setting.partition("=")[0]
            print(f"{name} = {await connection.fetchval(f'SHOW {name}')}")
    finally:
        await connection.close()


#: process groups of the stack by command line (the first that matches), for ``scheduled``
GROUPS = (
    ("PostgreSQL", "postgres"),
    ("gateway", "runyard.gateway"),
    ("experiments service", "runyard.experiments"),
    ("other services, Tansu, mail sink", "runyard"),
    ("other services, Tansu, mail sink", "tansu"),
)


def scheduled() -> dict[str, tuple[float, float, int]]:
    """Per process group (and this bench process): seconds its threads have run on a core,
    seconds they waited, runnable, for one, and how many times they were put on a core
    (Linux's ``/proc/<pid>/task/<tid>/schedstat``)."""
    found: dict[str, list[float]] = {}
    for process in psutil.process_iter(["cmdline"]):
        command = " ".join(process.info["cmdline"] or [])
        if process.pid == os.getpid():
            group = "bench client (this process)"
        else:
            group = next((name for name, part in GROUPS if part in command), "")
            if not group or "mlflow" in command:
                continue
        for task in Path(f"/proc/{process.pid}/task").glob("*/schedstat"):
            try:
                ran, waited, slices = task.read_text().split()
            except (OSError, ValueError):
                continue
            total = found.setdefault(group, [0.0, 0.0, 0])
            total[0] += int(ran) / 1e9
            total[1] += int(waited) / 1e9
            total[2] += int(slices)
    return {group: (ran, waited, int(slices)) for group, (ran, waited, slices) in found.items()}


def print_scheduled(
    before: dict[str, tuple[float, float, int]],
    after: dict[str, tuple[float, float, int]],
    sent: int,
) -> None:
    """What ``scheduled`` moved by during the loop, per request."""
    print("| per request | ms on a core | ms waiting for a core | times put on a core |")
    print("|---|---|---|---|")
    for group, (ran, waited, slices) in after.items():
        ran_before, waited_before, slices_before = before.get(group, (0.0, 0.0, 0))
        print(
            f"| {group} | {(ran - ran_before) * 1000 / sent:.3f} |"
            f" {(waited - waited_before) * 1000 / sent:.3f} |"
            f" {(slices - slices_before) / sent:.2f} |"
        )
    print()


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
        if args.set:
            await apply_settings(stack.admin_dsn, args.set)
        sent = 0
        deadline = time.monotonic() + args.seconds
        admin = await asyncpg.connect(stack.admin_dsn)
        flushes_before = await admin.fetchval(FLUSHES)
        sampler = (
            asyncio.create_task(sample_activity(stack.admin_dsn, deadline, args.waits_every))
            if args.waits
            else None
        )
        scheduled_before = scheduled() if args.waits else {}

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
        scheduled_after = scheduled() if args.waits else {}
        flushes = await admin.fetchval(FLUSHES) - flushes_before
        if vacuum is not None:
            print(f"\nVACUUM of the runs' table: {await vacuum} times")
    print(f"\n{sent} requests, {sent / (time.monotonic() - started):.0f} a second on average")
    print(f"WAL flushes (every service's commits): {flushes / sent:.2f} per request\n")
    if sampler is not None:
        print_activity(await sampler, sent)
        print()
        print_scheduled(scheduled_before, scheduled_after, sent)
    try:
        rows = await admin.fetch(TABLES)
    finally:
        await admin.close()
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
    parser.add_argument(
        "--waits", action="store_true", help="sample what PostgreSQL's backends wait for"
    )
    parser.add_argument(
        "--waits-every", type=float, default=0.01, help="seconds between samples (--waits)"
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE", help="a PostgreSQL setting"
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
