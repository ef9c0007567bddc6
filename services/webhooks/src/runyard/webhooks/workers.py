"""The delivery worker: claim due deliveries, POST them, record the outcome."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import aiohttp
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from runyard.shared.logging import get_logger
from runyard.shared.runtime import Runtime
from runyard.webhooks import service
from runyard.webhooks.config import Settings
from runyard.webhooks.delivery import AttemptResult, build_request, post
from runyard.webhooks.signing import SecretBox

log = get_logger(__name__)


def new_http_session(settings: Settings) -> aiohttp.ClientSession:
    """No cookies carried between endpoints, no proxy settings from the environment."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=settings.delivery_concurrency),
        cookie_jar=aiohttp.DummyCookieJar(),
        trust_env=False,
    )


async def attempt(
    http: aiohttp.ClientSession,
    job: service.ClaimedDelivery,
    *,
    box: SecretBox,
    timeout_s: float,
) -> AttemptResult:
    try:
        request = build_request(
            provider_type=job.provider_type,
            secret=box.decrypt(job.secret_encrypted),
            event=job.payload,
        )
    except Exception as exc:
        return AttemptResult(None, None, f"could not build the request: {type(exc).__name__}", 0)
    return await post(http, job.url, request, timeout_s=timeout_s)


async def deliver_due(
    sessionmaker: async_sessionmaker[AsyncSession],
    http: aiohttp.ClientSession,
    *,
    settings: Settings,
) -> int:
    """One pass: claim up to a batch of due deliveries (short transaction), send them outside
    any transaction, then record each result in its own transaction. Returns how many ran."""
    lease = timedelta(seconds=settings.delivery_timeout_s + settings.delivery_lease_margin_s)
    async with sessionmaker() as session, session.begin():
        jobs = await service.claim_due_deliveries(
            session, limit=settings.delivery_batch_size, lease=lease
        )
    if not jobs:
        return 0
    box = SecretBox(settings.secret_encryption_key)
    gate = asyncio.Semaphore(settings.delivery_concurrency)

    async def run(job: service.ClaimedDelivery) -> None:
        async with gate:
            result = await attempt(http, job, box=box, timeout_s=settings.delivery_timeout_s)
        async with sessionmaker() as session, session.begin():
            await service.record_attempt(session, job=job, result=result)

    outcomes = await asyncio.gather(*(run(job) for job in jobs), return_exceptions=True)
    for job, outcome in zip(jobs, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            # The lease expires and the delivery is tried again: at-least-once.
            log.error(
                "webhooks.delivery.record_failed",
                delivery_id=str(job.delivery_id),
                error=repr(outcome),
            )
    return len(jobs)


async def delivery_worker(runtime: Runtime) -> None:
    settings = runtime.settings
    if not isinstance(settings, Settings):
        raise TypeError("webhooks worker started without webhooks Settings")
    async with new_http_session(settings) as http:
        while True:
            handled = await deliver_due(runtime.sessionmaker, http, settings=settings)
            if handled < settings.delivery_batch_size:
                await asyncio.sleep(settings.delivery_poll_interval_s)
