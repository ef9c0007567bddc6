"""CPU of a running local stack at rest, per process: cores = CPU seconds / wall seconds.

Start the stack (``make up``, or ``python -m runyard.devstack up --data-dir DIR``), let it settle,
touch nothing, then:

    uv run python bench/idle_cpu.py [--data-dir .data] [--seconds 60]

It reads the stack's ``processes.json`` (the supervisor and its children) and the postmaster's
pid, and names every PostgreSQL backend from ``pg_stat_activity`` (``application_name`` is
``runyard-<service>-<instance>``; a bare role name is a LISTEN connection). The postmaster's
line includes the backends that exited meanwhile (autovacuum workers), read from its
children's CPU times. Issue #15's yardstick: at most 0.03 cores for the whole stack.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

import asyncpg
import psutil


def cpu_seconds(process: psutil.Process, *, with_exited_children: bool) -> float | None:
    try:
        times = process.cpu_times()
    except psutil.Error:
        return None
    total: float = times.user + times.system
    if with_exited_children:
        total += times.children_user + times.children_system
    return total


async def backend_names(pgdata: Path) -> dict[int, str]:
    lines = (pgdata / "postmaster.pid").read_text().splitlines()
    conn = await asyncpg.connect(
        host=lines[4].strip(), port=int(lines[3]), user="postgres", database="postgres"
    )
    try:
        rows = await conn.fetch(
            "SELECT pid, backend_type, application_name, usename FROM pg_stat_activity "
            "WHERE pid <> pg_backend_pid()"
        )
    finally:
        await conn.close()
    names = {}
    for row in rows:
        if row["backend_type"] == "client backend":
            names[row["pid"]] = f"postgres: {row['application_name'] or row['usename']}"
        else:
            names[row["pid"]] = f"postgres: {row['backend_type']}"
    return names


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", type=Path, default=Path(".data"))
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    record = json.loads((args.data_dir / "processes.json").read_text())
    names = {p["pid"]: p["name"] for p in record["processes"]}
    names[record["owner"]] = "supervisor (devstack up)"
    pgdata = args.data_dir / "postgres"
    postmaster = 0
    if (pgdata / "postmaster.pid").exists():
        postmaster = int((pgdata / "postmaster.pid").read_text().split()[0])
        names[postmaster] = "postgres: postmaster (+ exited backends)"
        names.update(asyncio.run(backend_names(pgdata)))

    processes: dict[int, psutil.Process] = {}
    for pid in list(names):
        try:
            process = psutil.Process(pid)
        except psutil.Error:
            continue
        processes[pid] = process
        for child in process.children(recursive=True):
            processes.setdefault(child.pid, child)
    before = {
        pid: cpu_seconds(p, with_exited_children=pid == postmaster) for pid, p in processes.items()
    }
    began = time.monotonic()
    time.sleep(args.seconds)
    wall = time.monotonic() - began
    rows: list[tuple[float, str]] = []
    for pid, process in processes.items():
        after = cpu_seconds(process, with_exited_children=pid == postmaster)
        start = before[pid]
        if after is None or start is None:
            continue
        rows.append(((after - start) / wall, names.get(pid, process.name())))
    grouped: dict[str, float] = {}
    for cores, name in rows:
        key = "postgres (all)" if name.startswith("postgres") else name
        grouped[key] = grouped.get(key, 0.0) + cores
    print(f"{wall:.0f} s at rest: {sum(c for c, _ in rows):.4f} cores in all")
    for name, cores in sorted(grouped.items(), key=lambda item: -item[1]):
        print(f"  {cores:7.4f}  {name}")
    print("PostgreSQL by process:")
    for cores, name in sorted(rows, reverse=True):
        if name.startswith("postgres") and cores > 0:
            print(f"  {cores:7.4f}  {name}")


if __name__ == "__main__":
    main()
