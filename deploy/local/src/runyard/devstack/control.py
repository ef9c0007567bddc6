"""How ``status``, ``restart`` and ``down`` reach the stack that ``up`` runs.

- ``<data>/stack.pid`` holds the pid of ``up``; ``down`` sends it SIGTERM.
- ``<data>/stack.json`` is written by the running stack (atomically: a temporary file renamed
  over it) whenever one of its processes changes: started, exited, restarted, ready, given up.
  ``status`` reads it and probes each process itself, so "ready" is never stale.
- ``<data>/control/`` is the stack's inbox: ``restart`` drops a file there naming the process;
  the supervisor picks it up within a fraction of a second, deletes it and restarts that
  process. ``restart`` then watches ``stack.json`` until the process was started again and
  answers its readiness probe.

Nothing listens on a socket and no signal carries data: a request cannot be lost while the stack
is busy, and a stack that is gone leaves files that the next ``up`` overwrites.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from runyard.devstack.dependencies import port_open, unix_socket_open
from runyard.devstack.paths import default_data_dir
from runyard.devstack.supervision import CRASH_LOOP, RUNNING

if TYPE_CHECKING:
    from runyard.devstack.stack import Stack

STATE_FILE = "stack.json"
PID_FILE = "stack.pid"
CONTROL_DIR = "control"


# ------------------------------------------------------------------------- the stack's side
def write_state(data_dir: Path, state: dict[str, Any]) -> None:
    target = data_dir / STATE_FILE
    temporary = target.with_name(f".{STATE_FILE}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(state, indent=2))
    os.replace(temporary, target)


def take_requests(data_dir: Path) -> list[str]:
    """The names asked to be restarted, oldest first; each request is consumed."""
    inbox = data_dir / CONTROL_DIR
    try:
        files = sorted(inbox.glob("restart-*"), key=lambda p: p.stat().st_mtime)
    except OSError:
        return []
    names = []
    for path in files:
        try:
            name = path.read_text().strip()
            path.unlink()
        except OSError:
            continue
        if name:
            names.append(name)
    return names


def describe(stack: Stack) -> dict[str, Any]:
    """What ``<data>/stack.json`` holds: URLs, and every process's supervision state."""
    return {
        "pid": os.getpid(),
        "phase": stack.phase,
        "started_at": stack.started_at,
        "gateway_url": stack.gateway_url,
        "service_urls": stack.service_urls,
        "instance_urls": stack.instance_urls,
        "topic_partitions": stack.topic_partition_counts,
        "kafka_bootstrap": stack.kafka_bootstrap,
        "smtp_url": stack.smtp_url,
        "mail_dir": str(stack.mail_dir) if stack.mail_dir else None,
        "logs_dir": str(stack.logs_dir),
        "processes": stack.supervisor.snapshot(),
        "external": stack.external_servers,
    }


# ------------------------------------------------------------------------ the CLI's side
def read_state(data_dir: Path) -> dict[str, Any] | None:
    try:
        state: dict[str, Any] = json.loads((data_dir / STATE_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return None
    return state


def request_restart(data_dir: Path, name: str) -> Path:
    inbox = data_dir / CONTROL_DIR
    inbox.mkdir(parents=True, exist_ok=True)
    request = inbox / f"restart-{uuid.uuid4().hex}"
    temporary = inbox / f".{request.name}.tmp"
    temporary.write_text(name)
    os.replace(temporary, request)  # appears whole, never half-written
    return request


def probe(entry: dict[str, Any], client: httpx.Client) -> str:
    """``yes``, ``no``, or the status other than 200 a service's ``/ready`` answered."""
    if entry.get("state") != RUNNING:
        return "no"
    address, kind = entry.get("address") or "", entry.get("probe")
    if kind == "http":
        try:
            code = client.get(f"{address}/ready").status_code
        except httpx.HTTPError:
            return "no"
        return "yes" if code == 200 else str(code)
    if kind == "tcp":
        host, _, port = address.rpartition(":")
        return "yes" if port.isdigit() and port_open(int(port), host) else "no"
    if kind == "unix":
        return "yes" if unix_socket_open(Path(address)) else "no"
    return "no"


def pid_alive(pid: int) -> bool:
    import psutil

    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def _data_dir(args: argparse.Namespace) -> Path:
    return Path(args.data_dir or default_data_dir()).resolve()


def _running_stack(data_dir: Path) -> int | None:
    pid = read_pid(data_dir / PID_FILE)
    return pid if pid is not None and pid_alive(pid) else None


def cmd_down(args: argparse.Namespace) -> int:
    data_dir = _data_dir(args)
    pid = _running_stack(data_dir)
    if pid is None:
        (data_dir / PID_FILE).unlink(missing_ok=True)
        print(f"runyard: no stack running on {data_dir}")
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + args.timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            print(
                f"runyard: stack (pid {pid}) still running after {args.timeout}s", file=sys.stderr
            )
            return 1
        time.sleep(0.1)
    print(f"runyard: stopped stack (pid {pid})")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """Exit 0: running, every process running and ready; 1: starting, or some process is not
    running or not ready; 3: not running."""
    data_dir = _data_dir(args)
    pid = _running_stack(data_dir)
    if pid is None:
        print(f"runyard: not running ({data_dir})")
        return 3
    state = read_state(data_dir)
    if state is None or state.get("pid") != pid:
        print(f"runyard: starting (pid {pid})")
        return 1
    now = time.time()
    phase = state.get("phase", "running")
    print(f"runyard: {phase} (pid {pid}), up {duration(now - state.get('started_at', now))}")
    ok = phase == "running"
    rows = [("NAME", "STATE", "PID", "UPTIME", "RESTARTS", "READY", "ADDRESS")]
    notes = []
    with httpx.Client(timeout=3.0, trust_env=False) as client:
        for entry in state.get("processes", []):
            ready = probe(entry, client)
            ok = ok and entry["state"] == RUNNING and ready == "yes"
            started = entry.get("started_at")
            rows.append(
                (
                    entry["name"],
                    entry["state"],
                    str(entry.get("pid") or "-"),
                    duration(now - started) if started else "-",
                    str(entry.get("restarts", 0)),
                    ready,
                    entry.get("address", ""),
                )
            )
            if entry["state"] == CRASH_LOOP:
                notes.append(
                    f"  {entry['name']} {entry.get('last_exit') or 'exited'} too often and is left "
                    f"stopped: read {entry['log']}, then `make restart SERVICE={entry['name']}`"
                )
    for name, address in state.get("external", {}).items():
        rows.append((name, "external", "-", "-", "-", "-", address))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  "
            + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    for note in notes:
        print(note)
    print(f"  mail {state.get('mail_dir') or state.get('smtp_url')}   logs {state.get('logs_dir')}")
    return 0 if ok else 1


def cmd_restart(args: argparse.Namespace) -> int:
    """Ask the running stack to restart one process, then wait until it is ready again."""
    data_dir = _data_dir(args)
    pid = _running_stack(data_dir)
    if pid is None:
        print(f"runyard: not running ({data_dir})", file=sys.stderr)
        return 3
    state = read_state(data_dir)
    entries = {e["name"]: e for e in (state or {}).get("processes", [])}
    if state is None or state.get("pid") != pid or state.get("phase") != "running":
        print("runyard: the stack is still starting; try again once it is up", file=sys.stderr)
        return 1
    if args.name not in entries:
        known = ", ".join(entries)
        print(f"runyard: no process {args.name!r} in this stack; known: {known}", file=sys.stderr)
        return 2
    before = entries[args.name]["starts"]
    request = request_restart(data_dir, args.name)
    print(f"runyard: restarting {args.name} ...", flush=True)
    deadline = time.monotonic() + args.timeout
    with httpx.Client(timeout=2.0, trust_env=False) as client:
        while time.monotonic() < deadline:
            time.sleep(0.2)
            if not pid_alive(pid):
                request.unlink(missing_ok=True)
                print("runyard: the stack stopped", file=sys.stderr)
                return 1
            entry = {e["name"]: e for e in (read_state(data_dir) or {}).get("processes", [])}.get(
                args.name
            )
            if entry is None or entry["starts"] <= before:
                continue
            if entry["state"] == CRASH_LOOP:
                print(
                    f"runyard: {args.name} {entry.get('last_exit') or 'exited'} again and again "
                    f"and is left stopped; read {entry['log']}",
                    file=sys.stderr,
                )
                return 1
            if probe(entry, client) == "yes":
                print(f"runyard: {args.name} restarted (pid {entry['pid']}) and ready")
                return 0
    request.unlink(missing_ok=True)
    print(f"runyard: {args.name} not ready after {args.timeout:g}s", file=sys.stderr)
    return 1
