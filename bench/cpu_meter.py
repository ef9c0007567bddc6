"""CPU seconds (user + system) that processes used during a benchmark's measured phase.

The machine is shared and noisy: wall-clock throughput moves with the load average, CPU seconds
per operation much less. ``CpuMeter`` snapshots named groups of processes at ``start()`` and
``stop()``; a process that exits in between is not counted, one that starts in between counts
in full (a pooled database connection lives through the phase).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

import asyncpg
import psutil

from runyard.shared.db import asyncpg_dsn

Finder = Callable[[], Iterable[psutil.Process]]


def _cpu(process: psutil.Process) -> float:
    try:
        times = process.cpu_times()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return 0.0
    return float(times.user + times.system)


def this_process() -> list[psutil.Process]:
    return [psutil.Process(os.getpid())]


def children_named(name: str) -> Finder:
    """Descendants of this process whose name contains ``name`` (the SMTP sink, Tansu ...)."""

    def find() -> list[psutil.Process]:
        found = []
        for child in psutil.Process(os.getpid()).children(recursive=True):
            try:
                if name in child.name() or name in " ".join(child.cmdline()):
                    found.append(child)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return found

    return find


def pid_and_children(pid: int) -> Finder:
    def find() -> list[psutil.Process]:
        try:
            root = psutil.Process(pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    return find


async def postgres_cluster(database_url: str) -> Finder:
    """The postmaster serving ``database_url`` and all its processes (backends, WAL writer ...).
    Only when the server runs on this machine; an empty group otherwise."""
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        backend = int(await conn.fetchval("SELECT pg_backend_pid()"))
        # while the backend still lives: it exits with the connection
        postmaster = psutil.Process(backend).ppid()
    except psutil.NoSuchProcess:
        return list
    finally:
        await conn.close()
    return pid_and_children(postmaster)


class CpuMeter:
    def __init__(self, groups: dict[str, Finder]) -> None:
        self.groups = groups
        self._start: dict[str, dict[int, float]] = {}
        self.used: dict[str, float] = {}

    def _snapshot(self) -> dict[str, dict[int, float]]:
        return {name: {p.pid: _cpu(p) for p in find()} for name, find in self.groups.items()}

    def start(self) -> None:
        self._start = self._snapshot()

    def stop(self) -> dict[str, float]:
        end = self._snapshot()
        self.used = {
            name: sum(t - self._start[name].get(pid, 0.0) for pid, t in end[name].items())
            for name in self.groups
        }
        return self.used

    def per_operation(self, count: int) -> str:
        """``service 0.62 ms, postgres 0.40 ms, ...`` per operation."""
        return ", ".join(
            f"{name} {used * 1000 / max(count, 1):.2f} ms" for name, used in self.used.items()
        )
