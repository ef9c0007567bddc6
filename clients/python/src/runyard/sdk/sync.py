"""``runyard sync``: upload the runs whose process is gone (offline runs, killed runs, runs
that ended while the server was away).

A run is taken only when its lock is free, so a live training process is never raced. Its log
is sent from the offset the server acknowledged last; anything sent twice changes nothing (the
server is idempotent per epoch). A run that never recorded its end (its process was killed) is
marked failed afterwards, unless ``finish_killed`` is False. A run whose upload is complete
is removed from disk.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Callable

from runyard.sdk.api import Api, Transient
from runyard.sdk.config import Settings
from runyard.sdk.sender import backoff
from runyard.sdk.upload import Blocked, Uploader
from runyard.sdk.wal import RunDir, Writer

KILLED = (
    "The training process ended without finishing the run (killed?); "
    "its epochs were uploaded by `runyard sync`."
)


@dataclass
class Outcome:
    run: str
    name: str
    experiment_id: str | None
    ok: bool
    message: str


def local_runs(settings: Settings) -> list[RunDir]:
    if not settings.runs_dir.is_dir():
        return []
    found = [RunDir(p) for p in settings.runs_dir.iterdir() if (p / "meta.json").exists()]
    return sorted(found, key=lambda r: r.meta_path.stat().st_mtime)


def matches(run: RunDir, wanted: Sequence[str]) -> bool:
    if not wanted:
        return True
    try:
        meta = run.read_meta()
    except (OSError, ValueError):
        return run.name in wanted
    names = {run.name, str(meta.get("experiment_id")), str(meta.get("local_id"))}
    return any(w in names for w in wanted)


def sync(
    settings: Settings,
    ids: Sequence[str] = (),
    *,
    finish_killed: bool = True,
    force: bool = False,
    attempts: int = 6,
    report: Callable[[str], None] = print,
) -> list[Outcome]:
    outcomes = []
    for run in local_runs(settings):
        if matches(run, ids):
            outcome = sync_one(
                settings, run, finish_killed=finish_killed, force=force, attempts=attempts
            )
            report(("" if outcome.ok else "error: ") + outcome.message)
            outcomes.append(outcome)
    return outcomes


def sync_one(
    settings: Settings, run: RunDir, *, finish_killed: bool, force: bool, attempts: int
) -> Outcome:
    meta = run.read_meta()
    name = str(meta.get("name") or (meta.get("create") or {}).get("body", {}).get("name", ""))
    label = f'{meta.get("experiment_id") or run.name} "{name}"'

    def result(ok: bool, message: str) -> Outcome:
        return Outcome(run.name, name, meta.get("experiment_id"), ok, f"{label}: {message}")

    lock = run.lock()
    if lock is None:
        return result(False, f"still being written by process {run.holder()}; not touched")
    try:
        ended = any(op.get("op") == "end" for op in run.ops())
        host = meta.get("host")
        if not ended and host and host != socket.gethostname() and not force:
            return result(False, f"written on host {host}: sync it there, or pass --force")
        if not ended and finish_killed:
            writer = Writer(run.wal_path)
            op = {"op": "end", "action": "fail", "body": {"error": KILLED}}
            writer.append((json.dumps(op, separators=(",", ":")) + "\n").encode())
            writer.close()
        with Api(str(meta.get("url") or settings.url), settings.api_key, settings.timeout) as api:
            uploader = Uploader(api, run, settings)
            failures = 0
            while True:
                try:
                    uploader.drain()
                    break
                except Transient as exc:
                    failures += 1
                    if failures >= attempts:
                        return result(False, f"{exc}; try again later")
                    time.sleep(exc.retry_after or backoff(failures, first=1.0, cap=10.0))
                except Blocked as exc:
                    return result(False, str(exc))
        stats = uploader.stats
        parts = [f"{stats.inserted} epochs uploaded"]
        if stats.unchanged or stats.updated:
            parts.append(f"{stats.unchanged + stats.updated} were already there")
        if stats.rejected:
            parts.append(f"{stats.rejected} refused (kept in {run.rejected_path})")
        parts.append(uploader.ended or "left open")
        for problem in uploader.problems:
            parts.append(problem)
        label = f'{uploader.experiment_id} "{uploader.meta.get("name") or name}"'
        meta = uploader.meta
        if not stats.rejected:
            lock.release()
            lock = None
            run.remove()
        return result(True, ", ".join(parts))
    finally:
        if lock is not None:
            lock.release()
