"""Restarts what died: the local stack's processes are watched by one ``Supervisor`` thread.

A watched process (a ``Unit``) that exits without being asked to is started again after a
backoff that starts at ``RestartPolicy.backoff_s`` and doubles up to ``backoff_max_s``; the
backoff goes back to its start once the process has been ready for ``reset_after_s``. A process
that needed ``crash_loop_restarts`` restarts within ``crash_loop_window_s`` and exits again is
left stopped ("crash-loop") until someone restarts it by hand; the others keep running.

Deliberate stops (``hold``) are never undone by the supervisor, and ``restart`` (``make restart
SERVICE=name``) stops and starts a process at once, forgetting its crash history.
"""

from __future__ import annotations

import collections
import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

#: the states a watched process can be in
RUNNING = "running"
BACKOFF = "backoff"  # exited; started again at ``next_start``
CRASH_LOOP = "crash-loop"  # exited too often: left stopped until restarted by hand
STOPPED = "stopped"  # stopped on purpose (``hold``): not restarted

#: ``RestartPolicy`` field -> the environment variable that overrides it
POLICY_ENV = {
    "backoff_s": "RUNYARD_RESTART_BACKOFF_S",
    "backoff_max_s": "RUNYARD_RESTART_BACKOFF_MAX_S",
    "reset_after_s": "RUNYARD_RESTART_RESET_S",
    "crash_loop_restarts": "RUNYARD_CRASH_LOOP_RESTARTS",
    "crash_loop_window_s": "RUNYARD_CRASH_LOOP_WINDOW_S",
}


@dataclass(frozen=True)
class RestartPolicy:
    backoff_s: float = 1.0
    backoff_max_s: float = 30.0
    reset_after_s: float = 60.0
    crash_loop_restarts: int = 5
    crash_loop_window_s: float = 120.0
    #: how often the watcher thread looks at every unit (a crash is restarted after the
    #: backoff anyway, so a slower look costs little and keeps the idle stack quiet)
    poll_interval_s: float = 1.0

    def __post_init__(self) -> None:
        if self.backoff_s <= 0 or self.backoff_max_s < self.backoff_s:
            raise ValueError("restart backoff must be > 0 and at most its maximum")
        if self.crash_loop_restarts < 1:
            raise ValueError("crash_loop_restarts must be at least 1")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> RestartPolicy:
        """The defaults, each overridden by its ``RUNYARD_RESTART_*`` / ``RUNYARD_CRASH_LOOP_*``
        variable when set."""
        values: dict[str, Any] = {}
        types = {f.name: f.type for f in fields(cls)}
        for name, variable in POLICY_ENV.items():
            raw = environ.get(variable, "").strip()
            if not raw:
                continue
            try:
                values[name] = int(raw) if types[name] == "int" else float(raw)
            except ValueError:
                raise ValueError(f"{variable} must be a number, got {raw!r}") from None
        return cls(**values)


@dataclass
class Unit:
    """One process the supervisor watches, seen through a few callables."""

    name: str
    kind: str  # "service", "postgres", "kafka" or "mail"
    start: Callable[[], None]  # raises when it could not be started
    stop: Callable[[], None]  # a deliberate, graceful stop
    pid: Callable[[], int | None]  # the live process, None once it is gone
    exit_status: Callable[[], str]  # how it ended: "exited with code 1", "killed by SIGKILL"
    ready: Callable[[], bool]  # a quick probe
    log_path: Path
    address: str  # URL, host:port or unix socket it serves
    probe: str  # how a separate process checks it: "http", "tcp" or "unix"


class Supervisable(Protocol):
    """A server object the stack starts (``EmbeddedPostgres``, ``Tansu``, ``MailSink``)."""

    @property
    def log_path(self) -> Path: ...

    @property
    def pid(self) -> int | None: ...

    def exit_status(self) -> str: ...

    def ready(self) -> bool: ...

    def stop(self) -> None: ...


def unit_of(
    process: Supervisable,
    name: str,
    *,
    start: Callable[[], None],
    address: str,
    probe: str,
) -> Unit:
    return Unit(
        name,
        name,
        start=start,
        stop=process.stop,
        pid=lambda: process.pid,
        exit_status=process.exit_status,
        ready=process.ready,
        log_path=process.log_path,
        address=address,
        probe=probe,
    )


@dataclass
class Watch:
    unit: Unit
    state: str = RUNNING
    pid: int | None = None
    started_at: float = field(default_factory=time.time)  # wall clock, for uptimes
    started_mono: float = 0.0
    starts: int = 1
    restarts: int = 0  # automatic restarts
    restart_times: collections.deque[float] = field(default_factory=collections.deque)
    delay: float = 0.0  # the next backoff
    next_start: float = 0.0
    ready: bool = False  # ready since its last start
    ready_since: float | None = None
    last_exit: str = ""

    def describe(self) -> dict[str, Any]:
        unit = self.unit
        return {
            "name": unit.name,
            "kind": unit.kind,
            "state": self.state,
            "pid": self.pid if self.state == RUNNING else None,
            "started_at": self.started_at if self.state == RUNNING else None,
            "starts": self.starts,
            "restarts": self.restarts,
            "ready": self.ready,
            "last_exit": self.last_exit or None,
            "address": unit.address,
            "probe": unit.probe,
            "log": str(unit.log_path),
        }


def tail(path: Path, lines: int = 15) -> str:
    try:
        data = path.read_bytes()[-32 * 1024 :]
    except OSError:
        return ""
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


def _indent(text: str) -> str:
    return "\n".join(f"    {line}" for line in text.splitlines()) or "    (empty)"


class Supervisor:
    """Watches units from a background thread (``run_in_background``) or, in tests, one
    ``tick()`` at a time. Every method takes ``lock``: whoever holds it may act on units."""

    def __init__(
        self,
        policy: RestartPolicy | None = None,
        *,
        notify: Callable[[str], None] = lambda _message: None,
        on_change: Callable[[], None] = lambda: None,
        requests: Callable[[], Iterable[str]] = lambda: (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy or RestartPolicy()
        self.notify = notify
        self.on_change = on_change
        self.requests = requests
        self.clock = clock
        self.lock = threading.RLock()
        self._watches: dict[str, Watch] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._changed = False

    # ------------------------------------------------------------------------ registry
    def watch(self, unit: Unit) -> None:
        """Watch ``unit``, which was just started."""
        with self.lock:
            watch = Watch(unit, delay=self.policy.backoff_s)
            self._mark_started(watch, first=True)
            self._watches[unit.name] = watch
            self._changed = True
            self._flush()

    def __contains__(self, name: object) -> bool:
        return name in self._watches

    def state(self, name: str) -> str:
        return self._watches[name].state

    def snapshot(self) -> list[dict[str, Any]]:
        with self.lock:
            return [w.describe() for w in self._watches.values()]

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ------------------------------------------------------------------------- control
    def hold(self, name: str) -> None:
        """The caller stops ``name`` on purpose: it is not restarted until ``resume``."""
        with self.lock:
            watch = self._watches[name]
            watch.state = STOPPED
            watch.ready = False
            self._changed = True
            self._flush()

    @contextlib.contextmanager
    def holding(self, name: str) -> Iterator[None]:
        """Stop and start ``name`` by hand inside the block; watched again afterwards."""
        with self.lock:
            self.hold(name)
            try:
                yield
            finally:
                self.resume(name)

    def resume(self, name: str) -> None:
        """Watch ``name`` again; start it when it is not running (as ``start`` would). Raises
        when it could not be started; the supervisor then tries again after the backoff."""
        with self.lock:
            watch = self._watches[name]
            if watch.unit.pid() is None:
                try:
                    watch.unit.start()
                except Exception as exc:
                    self._exited(watch, self.clock(), f"could not be started: {exc}")
                    self._flush()
                    raise
            if watch.state != RUNNING or watch.pid != watch.unit.pid():
                self._mark_started(watch)
            watch.state = RUNNING
            self._changed = True
            self._flush()

    def restart(self, name: str) -> None:
        """Stop ``name`` (gracefully) and start it again now, whatever its state; its backoff
        and crash history start over. Raises when it could not be started."""
        with self.lock:
            watch = self._watches[name]
            self.notify(f"restarting {name} (asked for)")
            watch.state = STOPPED
            if watch.unit.pid() is not None:
                watch.unit.stop()
            watch.restart_times.clear()
            watch.delay = self.policy.backoff_s
            try:
                watch.unit.start()
            except Exception as exc:
                self._exited(watch, self.clock(), f"could not be started: {exc}")
                self._flush()
                raise
            self._mark_started(watch)
            watch.state = RUNNING
            self.notify(f"{name} restarted (pid {watch.pid})")
            self._flush()

    # --------------------------------------------------------------------------- loop
    def run_in_background(self) -> None:
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="supervisor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop watching (nothing is restarted any more); the processes are left as they are."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=120)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.policy.poll_interval_s):
            try:
                self.tick()
            except Exception as exc:  # keep watching whatever went wrong once
                self.notify(f"supervisor error: {exc!r}")

    def tick(self) -> None:
        with self.lock:
            for name in self.requests():
                if name not in self._watches:
                    self.notify(f"restart of {name} asked for, but it is not supervised here")
                    continue
                with contextlib.suppress(Exception):  # reported; the unit is in backoff now
                    self.restart(name)
            for watch in list(self._watches.values()):
                if self._stop.is_set():
                    break
                self._check(watch)
            self._flush()

    def _check(self, watch: Watch) -> None:
        now = self.clock()
        if watch.state == RUNNING:
            if watch.unit.pid() is None:
                self._exited(watch, now, watch.unit.exit_status())
            elif not watch.ready:
                if watch.unit.ready():
                    watch.ready = True
                    watch.ready_since = now
                    self._changed = True
                    if watch.starts > 1:
                        self.notify(f"{watch.unit.name} is ready again")
            elif (
                watch.ready_since is not None
                and watch.delay > self.policy.backoff_s
                and now - watch.ready_since >= self.policy.reset_after_s
            ):
                watch.delay = self.policy.backoff_s  # stayed ready: a later crash starts over
        elif watch.state == BACKOFF and now >= watch.next_start:
            watch.restart_times.append(now)
            watch.restarts += 1
            try:
                watch.unit.start()
            except Exception as exc:
                self._changed = True
                self._exited(watch, now, f"could not be started: {exc}")
                return
            self._mark_started(watch)
            watch.state = RUNNING
            self.notify(f"{watch.unit.name} restarted (pid {watch.pid}, restart {watch.restarts})")

    def _exited(self, watch: Watch, now: float, status: str) -> None:
        name, policy = watch.unit.name, self.policy
        watch.pid = None
        watch.ready = False
        watch.ready_since = None
        watch.last_exit = status
        self._changed = True
        while watch.restart_times and now - watch.restart_times[0] > policy.crash_loop_window_s:
            watch.restart_times.popleft()
        log = watch.unit.log_path
        if len(watch.restart_times) >= policy.crash_loop_restarts:
            watch.state = CRASH_LOOP
            self.notify(
                f"{name} is crash-looping: it {status} again after {len(watch.restart_times)} "
                f"restarts within {policy.crash_loop_window_s:g}s, so it is left stopped "
                f"(the rest keeps running). Read {log}, fix the cause, then "
                f"`make restart SERVICE={name}`. Its last lines:\n{_indent(tail(log))}"
            )
            return
        watch.state = BACKOFF
        watch.next_start = now + watch.delay
        self.notify(
            f"{name} {status}; starting it again in {watch.delay:g}s "
            f"(restart {watch.restarts + 1}). Last lines of {log}:\n{_indent(tail(log))}"
        )
        watch.delay = min(watch.delay * 2, policy.backoff_max_s)

    def _mark_started(self, watch: Watch, *, first: bool = False) -> None:
        watch.pid = watch.unit.pid()
        watch.started_at = time.time()
        watch.started_mono = self.clock()
        watch.ready = False
        watch.ready_since = None
        if not first:
            watch.starts += 1
        self._changed = True

    def _flush(self) -> None:
        if self._changed:
            self._changed = False
            self.on_change()
