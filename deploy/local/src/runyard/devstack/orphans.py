"""``<data>/stack.lock`` and ``<data>/processes.json``: one stack per data directory, and what it
started, so the next one can stop what a crashed stack left running (it holds the data
directory's lock, so whoever recorded them is gone)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO

from runyard.devstack.dependencies import StackError


def lock(path: Path) -> IO[str]:
    """Hold ``path``'s lock for as long as the returned file stays open."""
    held = open(path, "w")  # noqa: SIM115 - held for the stack's life
    try:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        held.close()
        raise StackError(
            f"another stack is running on {path.parent} (stop it with `make down`)"
        ) from None
    return held


def record(path: Path, pids: Mapping[str, int]) -> None:
    """Remember these processes (PostgreSQL excluded: the next start reuses it)."""
    import psutil

    entries = []
    for name, pid in pids.items():
        if name == "postgres":
            continue
        with contextlib.suppress(psutil.Error):
            entries.append(
                {"name": name, "pid": pid, "create_time": psutil.Process(pid).create_time()}
            )
    path.write_text(json.dumps({"owner": os.getpid(), "processes": entries}))


def reap(path: Path, say: Callable[[str], None]) -> None:
    """Stop every recorded process that is still the one recorded (not a reused pid)."""
    import psutil

    try:
        entries = json.loads(path.read_text()).get("processes", [])
    except (FileNotFoundError, ValueError):
        return
    for entry in entries:
        try:
            proc = psutil.Process(int(entry["pid"]))
            if abs(proc.create_time() - float(entry["create_time"])) > 0.01:
                continue  # pid reused by something else
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(5)
        except psutil.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(int(entry["pid"]), signal.SIGKILL)
        except (psutil.Error, ProcessLookupError, KeyError, ValueError):
            continue
        say(f"stopped {entry['name']} (pid {entry['pid']}) left over by a crashed stack")
    path.unlink(missing_ok=True)
