"""The delivery worker: take handed-over or claim due deliveries, POST them, record the outcome.

New deliveries come straight from fan-out in this process (``handoff``: inserted leased, no
claim needed); the others are claimed in short transactions (``FOR UPDATE SKIP LOCKED``, a
lease pushes ``next_attempt_at`` forward). HTTP happens outside any transaction; results are
recorded in batches, one transaction per batch (each result alone if the batch fails). The
worker keeps up to ``delivery_concurrency`` requests in flight and takes more as soon as a slot
frees, so a slow endpoint never holds the others back.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from datetime import timedelta

import aiohttp
import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from runyard.shared.db import asyncpg_dsn
from runyard.shared.logging import get_logger
from runyard.shared.runtime import WorkSignal
from runyard.webhooks import delivery_events
from runyard.webhooks.attempts import (
    ClaimedDelivery,
    Outcome,
    claim_due_deliveries,
    record_attempts,
    send_once,
)
from runyard.webhooks.config import Settings
from runyard.webhooks.context import ServiceRuntime
from runyard.webhooks.handoff import Handoff

log = get_logger(__name__)

#: NOTIFY channel of the statement trigger on ``webhook_deliveries`` (migration 0002).
DELIVERIES_CHANNEL = "runyard_webhooks_deliveries"
#: Results recorded per transaction at most.
RECORD_BATCH = 100
#: Handed-over deliveries waiting for a slot at most (see ``DeliveryLoop.measure``).
HANDOFF_MAX = 1000

Sessionmaker = async_sessionmaker[AsyncSession]


async def claim(
    sessionmaker: Sessionmaker, *, settings: Settings, limit: int
) -> list[ClaimedDelivery]:
    lease = timedelta(seconds=settings.delivery_timeout_s + settings.delivery_lease_margin_s)
    async with sessionmaker() as session, session.begin():
        return await claim_due_deliveries(
            session, limit=limit, lease=lease, slack_rate=settings.slack_rate_limit_per_second
        )


async def record(
    sessionmaker: Sessionmaker,
    outcomes: Sequence[Outcome],
    *,
    settings: Settings,
    recorded: WorkSignal | None = None,
) -> None:
    """All results in one transaction; if that fails, each alone. A result that cannot be
    recorded is logged: its lease expires and the delivery is tried again (at-least-once).
    ``recorded`` is notified after each commit (it wakes the ``delivery-events`` worker)."""
    if not outcomes:
        return
    try:
        async with sessionmaker() as session, session.begin():
            await record_attempts(session, outcomes, settings=settings)
        if recorded is not None:
            recorded.notify()
        return
    except Exception as exc:
        if len(outcomes) == 1:
            log.error(
                "webhooks.delivery.record_failed",
                delivery_id=str(outcomes[0][0].delivery_id),
                error=repr(exc),
            )
            return
        log.warning("webhooks.delivery.record_batch_failed", size=len(outcomes), error=repr(exc))
    for outcome in outcomes:
        await record(sessionmaker, [outcome], settings=settings, recorded=recorded)


async def deliver_due(
    sessionmaker: Sessionmaker, http: aiohttp.ClientSession, *, settings: Settings
) -> int:
    """One pass (tests, tools): claim up to a batch, send them all, record the results.
    Returns how many were attempted."""
    jobs = await claim(sessionmaker, settings=settings, limit=settings.delivery_batch_size)
    if not jobs:
        return 0
    gate = asyncio.Semaphore(settings.delivery_concurrency)

    async def send(job: ClaimedDelivery) -> Outcome:
        async with gate:
            return job, await send_once(http, job, settings=settings)

    outcomes = await asyncio.gather(*(send(job) for job in jobs))
    await record(sessionmaker, outcomes, settings=settings)
    return len(jobs)


async def _listen(dsn: str, notified: Callable[[], None]) -> asyncpg.Connection | None:
    try:
        conn = await asyncpg.connect(dsn)
        await conn.add_listener(DELIVERIES_CHANNEL, lambda *_: notified())
        return conn
    except (OSError, asyncpg.PostgresError) as exc:
        log.warning("webhooks.worker.listen_unavailable", error=str(exc))
        return None


class DeliveryLoop:
    """Keeps up to ``delivery_concurrency`` attempts in flight, fed first by what fan-out hands
    over (``handoff``: new deliveries, no claim needed), then by claims of due deliveries
    (retries, rate-limited endpoints, rows of a worker that died, what the handoff had no room
    for). A recorder task writes the results in batches as they come in.

    It claims when a delivery may be due: NOTIFY from an insert of due rows, the previous
    claim filled every slot it was asked for, or ``delivery_poll_interval_s`` passed since the
    last claim (retries coming due, leases running out, rate-limit slots)."""

    def __init__(
        self,
        sessionmaker: Sessionmaker,
        http: aiohttp.ClientSession,
        settings: Settings,
        handoff: Handoff | None = None,
        recorded: WorkSignal | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.http = http
        self.settings = settings
        self.handoff = handoff
        self.recorded = recorded
        self.wake = asyncio.Event()
        self.in_flight: set[asyncio.Task[None]] = set()
        self.done: asyncio.Queue[Outcome] = asyncio.Queue()
        #: a claim may find something (see the class docstring)
        self.due_maybe = True
        self._last_claim = 0.0
        self._completed = 0
        self._measured_at = time.monotonic()

    async def _send(self, job: ClaimedDelivery) -> None:
        result = await send_once(self.http, job, settings=self.settings)
        await self.done.put((job, result))

    def _drain(self, first: Outcome | None = None) -> list[Outcome]:
        batch = [] if first is None else [first]
        while len(batch) < RECORD_BATCH and not self.done.empty():
            batch.append(self.done.get_nowait())
        return batch

    async def recorder(self) -> None:
        while True:
            batch = self._drain(await self.done.get())
            await record(self.sessionmaker, batch, settings=self.settings, recorded=self.recorded)

    def _start(self, job: ClaimedDelivery) -> None:
        task = asyncio.create_task(self._send(job))
        self.in_flight.add(task)
        task.add_done_callback(self._finished)

    def take_handed(self) -> int:
        """Start handed-over deliveries in the free slots; returns how many."""
        started = 0
        if self.handoff is None:
            return 0
        while len(self.in_flight) < self.settings.delivery_concurrency:
            job = self.handoff.take()
            if job is None:
                break
            self._start(job)
            started += 1
        return started

    async def fill(self) -> int:
        """Claim as many due deliveries as there are free slots; returns how many."""
        free = self.settings.delivery_concurrency - len(self.in_flight)
        if free <= 0:
            return 0
        limit = min(free, self.settings.delivery_batch_size)
        self._last_claim = time.monotonic()
        jobs = await claim(self.sessionmaker, settings=self.settings, limit=limit)
        # fewer than asked for: nothing else is due now
        self.due_maybe = len(jobs) == limit
        for job in jobs:
            self._start(job)
        return len(jobs)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self.in_flight.discard(task)
        self._completed += 1
        self.wake.set()

    def measure(self) -> None:
        """Every second: let the handoff hold what this worker sends in a quarter of the time
        a handed delivery may wait (``max_wait_s``), at least one per slot."""
        now = time.monotonic()
        if self.handoff is None or now - self._measured_at < 1.0:
            return
        rate = self._completed / (now - self._measured_at)
        self._completed, self._measured_at = 0, now
        self.handoff.capacity = max(
            self.settings.delivery_concurrency,
            min(HANDOFF_MAX, int(rate * self.handoff.max_wait_s / 4)),
        )

    def _notified(self) -> None:
        self.due_maybe = True
        self.wake.set()

    async def run(self, dsn: str | None) -> None:
        recorder = asyncio.create_task(self.recorder())
        listener = await _listen(dsn, self._notified) if dsn else None
        poll = self.settings.delivery_poll_interval_s
        if self.handoff is not None:
            self.handoff.on_arrival = self.wake.set
            self.handoff.active = True
        try:
            while True:
                self.wake.clear()
                self.measure()
                self.take_handed()
                if time.monotonic() - self._last_claim >= poll:
                    self.due_maybe = True
                if self.due_maybe and len(self.in_flight) < self.settings.delivery_concurrency:
                    await self.fill()
                    if self.due_maybe:
                        continue  # there may be more due right now
                if dsn and (listener is None or listener.is_closed()):
                    listener = await _listen(dsn, self._notified)
                    if listener is not None:
                        self.due_maybe = True  # NOTIFYs may have been missed meanwhile
                        continue
                # every slot busy: a finishing request wakes the loop; else the next claim is due
                # after the poll interval, or earlier if NOTIFY or a handoff wakes it
                full = len(self.in_flight) >= self.settings.delivery_concurrency
                wait = None if full else max(0.0, self._last_claim + poll - time.monotonic())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), timeout=wait)
        finally:
            if self.handoff is not None:
                # left to their leases: claimed again when those end
                self.handoff.clear()
            for task in list(self.in_flight):
                task.cancel()
            await asyncio.gather(*self.in_flight, return_exceptions=True)
            recorder.cancel()
            await asyncio.gather(recorder, return_exceptions=True)
            # what was sent but not yet recorded: record it now rather than send it again
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    record(
                        self.sessionmaker,
                        self._drain(),
                        settings=self.settings,
                        recorded=self.recorded,
                    ),
                    timeout=5,
                )
            if listener is not None and not listener.is_closed():
                await listener.close()


async def delivery_worker(
    runtime: ServiceRuntime, handoff: Handoff | None = None, recorded: WorkSignal | None = None
) -> None:
    """Sends what fan-out hands over at once; claims due deliveries when woken by NOTIFY (fan-out
    committed due rows), when a claim filled every slot, or every poll interval (scheduled
    retries, rate-limit slots, expired leases). ``recorded`` hears of every results commit."""
    dsn = asyncpg_dsn(runtime.engine.url.render_as_string(hide_password=False))
    loop = DeliveryLoop(
        runtime.sessionmaker, runtime.context.http, runtime.settings, handoff, recorded
    )
    await loop.run(dsn)


async def delivery_events_worker(runtime: ServiceRuntime, recorded: WorkSignal) -> None:
    """``webhook.deliveries_updated``, one per endpoint and window (``delivery_events``): woken
    by this process's results commits (``recorded``), else every
    ``delivery_events_poll_s``."""
    settings = runtime.settings
    await delivery_events.write_events(
        runtime.sessionmaker,
        recorded,
        window_s=settings.delivery_events_window_s,
        poll_s=settings.delivery_events_poll_s,
    )
