"""The background thread that sends a live run's log: the training loop never waits for it.

It wakes every ``batch_seconds`` (or when 1,000 epochs wait, or when asked to flush), sends
everything after the acknowledged offset in batches, and on a network error, timeout, 5xx or
429 waits with exponential backoff and full jitter (honouring ``Retry-After``) before trying the
same batch again. It holds at most one batch in memory, whatever the outage's length: the rest
waits on disk. Problems are reported once per outage, and once more when it is over.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Callable

from runyard.sdk.api import ApiError, Transient
from runyard.sdk.upload import Blocked, Uploader

BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0


def backoff(failures: int, *, first: float = BACKOFF_FIRST, cap: float = BACKOFF_MAX) -> float:
    """Full jitter: uniform in [0, min(cap, first * 2**(failures-1))], never below 10% of it
    (the exponent stops growing once past the cap: a long outage never overflows a float)."""
    ceiling = min(cap, first * 2 ** min(max(0, failures - 1), 32))
    return random.uniform(ceiling * 0.1, ceiling)


class Sender:
    def __init__(
        self,
        uploader: Uploader,
        *,
        batch_seconds: float,
        heartbeat_seconds: float,
        written: Callable[[], int],
        report: Callable[[str], None],
        sync: Callable[[], None] = lambda: None,
    ) -> None:
        self.uploader = uploader
        self.batch_seconds = batch_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self._written = written
        self._report = report
        self._sync = sync
        self._wake = threading.Event()
        self._kick_lock = threading.Lock()
        #: the log's length at the latest kick: what the kicks asked to be sent
        self._kicked_at = 0
        self._progress = threading.Condition()
        self._stopping = False
        self._flushing = False
        self.blocked: str | None = None
        self.failing: str | None = None
        self.failures = 0
        self._heartbeat = heartbeat_seconds > 0
        self._next_heartbeat = 0.0
        self._synced = -1
        self._reported = 0
        self._thread = threading.Thread(target=self._loop, name="runyard-sender", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def kick(self) -> None:
        """Send what is written now without waiting for ``batch_seconds``."""
        with self._kick_lock:
            self._kicked_at = max(self._kicked_at, self._written())
            self._wake.set()

    @property
    def healthy(self) -> bool:
        """The last attempt got through (False during an outage or once blocked)."""
        return self.failing is None and self.blocked is None

    def done(self, target: int) -> bool:
        return self.uploader.acked >= target and bool(self.uploader.experiment_id)

    def flush(self, timeout: float) -> bool:
        """Wait until the server has everything written so far, at most ``timeout`` seconds.
        True when it has."""
        target = self._written()
        deadline = time.monotonic() + timeout
        self._flushing = True
        self.kick()
        try:
            with self._progress:
                while not self.done(target) and self.blocked is None:
                    left = deadline - time.monotonic()
                    if left <= 0 or not self._thread.is_alive():
                        break
                    self._progress.wait(min(left, 0.25))
        finally:
            self._flushing = False
        return self.done(target)

    def stop(self, join: float = 1.0) -> None:
        self._stopping = True
        self.kick()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(join)

    # ----------------------------------------------------------------------------- the thread
    def _loop(self) -> None:
        while not self._stopping:
            deadline = time.monotonic() + self._cycle()
            self._forget_kicks_served()
            while not self._stopping:  # while someone waits in flush(), retry sooner
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                if self._wake.wait(min(left, 0.25) if self._flushing else left):
                    self._wake.clear()
                    break

    def _forget_kicks_served(self) -> None:
        """A kick that came during the cycle asked for what was written by then: once the server
        has that, no second cycle is due (it would send what was logged after the kick, e.g.
        after a ``flush()`` returned, before ``batch_seconds``)."""
        with self._kick_lock:
            if self._wake.is_set() and self.done(self._kicked_at):
                self._wake.clear()

    def _cycle(self) -> float:
        if self.blocked is not None:
            return 3600.0
        written = self._written()
        if written != self._synced:
            self._sync()  # fsync: what the server does not have yet survives a power loss too
            self._synced = written
        try:
            # what was written when the cycle began: a later epoch waits for the next cycle
            # (batch_seconds, a kick or a flush), as it would have had it come a moment later
            while not self._stopping and self.uploader.step(until=written):
                self._notify()
        except Transient as exc:
            return self._outage(exc)
        except Blocked as exc:
            self.blocked = str(exc)
            self._report(
                f"{exc}. Sending stopped; logging goes on locally in {self.uploader.run.path} "
                f"(upload later with `runyard sync {self.uploader.run.name}`)"
            )
            self._notify()
            return 3600.0
        except Exception as exc:  # a bug or a full disk must not end the thread silently
            return self._outage(Transient(f"{type(exc).__name__}: {exc}"))
        self._problems()
        if self.failing is not None:
            self._report("the server is reachable again; the epochs logged meanwhile were sent")
        self.failing, self.failures = None, 0
        self._notify()
        self._beat()
        return self.batch_seconds

    def _outage(self, exc: Transient) -> float:
        self._problems()
        self.failures += 1
        if self.failing is None:
            self._report(
                f"{exc}; the training goes on and every epoch is kept in "
                f"{self.uploader.run.path} until the server takes it (reported once)"
            )
        self.failing = str(exc)
        self._notify()
        if exc.retry_after is not None:
            return min(exc.retry_after, BACKOFF_MAX)
        return backoff(self.failures)

    def _problems(self) -> None:
        for problem in self.uploader.problems[self._reported :]:
            self._report(problem)
        self._reported = len(self.uploader.problems)

    def _notify(self) -> None:
        with self._progress:
            self._progress.notify_all()

    def _beat(self) -> None:
        """``POST /experiments/{id}/heartbeat`` every ``heartbeat_seconds`` while the run is open:
        the server can tell a silent run from a dead one. A server without the endpoint (404,
        405) is not asked again; any other failure is ignored."""
        now = time.monotonic()
        experiment_id = self.uploader.experiment_id
        if not self._heartbeat or now < self._next_heartbeat or not experiment_id:
            return
        self._next_heartbeat = now + self.heartbeat_seconds
        try:
            self.uploader.api.request("POST", f"/experiments/{experiment_id}/heartbeat")
        except ApiError as exc:
            if exc.status in (404, 405):
                self._heartbeat = False
        except Transient:
            pass
