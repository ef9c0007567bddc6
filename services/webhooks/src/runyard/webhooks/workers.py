"""The delivery worker: claim due deliveries, POST them, record the outcome.

Claims are short transactions (``FOR UPDATE SKIP LOCKED``, a lease pushes ``next_attempt_at``
forward); HTTP happens outside any transaction; results are recorded in batches, one
transaction per batch (each result alone if the batch fails). The worker keeps up to
``delivery_concurrency`` requests in flight and claims more as soon as a slot frees, so a slow
endpoint never holds the others back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import timedelta

import aiohttp
import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from runyard.shared.db import asyncpg_dsn
from runyard.shared.logging import get_logger
from runyard.webhooks.attempts import (
    ClaimedDelivery,
    Outcome,
    claim_due_deliveries,
    record_attempts,
    send_once,
)
from runyard.webhooks.config import Settings
from runyard.webhooks.context import ServiceRuntime

log = get_logger(__name__)

#: NOTIFY channel of the statement trigger on ``webhook_deliveries`` (migration 0002).
DELIVERIES_CHANNEL = "runyard_webhooks_deliveries"
#: Results recorded per transaction at most.
RECORD_BATCH = 100

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
    sessionmaker: Sessionmaker, outcomes: Sequence[Outcome], *, settings: Settings
) -> None:
    """All results in one transaction; if that fails, each alone. A result that cannot be
    recorded is logged: its lease expires and the delivery is tried again (at-least-once)."""
    if not outcomes:
        return
    try:
        async with sessionmaker() as session, session.begin():
            await record_attempts(session, outcomes, settings=settings)
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
        await record(sessionmaker, [outcome], settings=settings)


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


async def _listen(dsn: str, wake: asyncio.Event) -> asyncpg.Connection | None:
    try:
        conn = await asyncpg.connect(dsn)
        await conn.add_listener(DELIVERIES_CHANNEL, lambda *_: wake.set())
        return conn
    except (OSError, asyncpg.PostgresError) as exc:
        log.warning("webhooks.worker.listen_unavailable", error=str(exc))
        return None


class DeliveryLoop:
    """Keeps up to ``delivery_concurrency`` attempts in flight; a recorder task writes the
    results in batches as they come in."""

    def __init__(
        self, sessionmaker: Sessionmaker, http: aiohttp.ClientSession, settings: Settings
    ) -> None:
        self.sessionmaker = sessionmaker
        self.http = http
        self.settings = settings
        self.wake = asyncio.Event()
        self.in_flight: set[asyncio.Task[None]] = set()
        self.done: asyncio.Queue[Outcome] = asyncio.Queue()

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
            await record(self.sessionmaker, batch, settings=self.settings)

    async def fill(self) -> int:
        """Claim as many due deliveries as there are free slots; returns how many."""
        free = self.settings.delivery_concurrency - len(self.in_flight)
        if free <= 0:
            return 0
        jobs = await claim(
            self.sessionmaker,
            settings=self.settings,
            limit=min(free, self.settings.delivery_batch_size),
        )
        for job in jobs:
            task = asyncio.create_task(self._send(job))
            self.in_flight.add(task)
            task.add_done_callback(self._finished)
        return len(jobs)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self.in_flight.discard(task)
        self.wake.set()

    async def run(self, dsn: str | None) -> None:
        recorder = asyncio.create_task(self.recorder())
        listener = await _listen(dsn, self.wake) if dsn else None
        try:
            while True:
                self.wake.clear()
                free = self.settings.delivery_concurrency - len(self.in_flight)
                claimed = await self.fill()
                if 0 < free == claimed:
                    continue  # there may be more due right now
                if dsn and (listener is None or listener.is_closed()):
                    listener = await _listen(dsn, self.wake)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self.wake.wait(), timeout=self.settings.delivery_poll_interval_s
                    )
        finally:
            for task in list(self.in_flight):
                task.cancel()
            await asyncio.gather(*self.in_flight, return_exceptions=True)
            recorder.cancel()
            await asyncio.gather(recorder, return_exceptions=True)
            # what was sent but not yet recorded: record it now rather than send it again
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    record(self.sessionmaker, self._drain(), settings=self.settings), timeout=5
                )
            if listener is not None and not listener.is_closed():
                await listener.close()


async def delivery_worker(runtime: ServiceRuntime) -> None:
    """Wakes when fan-out commits new deliveries (NOTIFY), when a request finishes, or every
    poll interval (scheduled retries, rate-limit slots)."""
    dsn = asyncpg_dsn(runtime.engine.url.render_as_string(hide_password=False))
    await DeliveryLoop(runtime.sessionmaker, runtime.context.http, runtime.settings).run(dsn)
