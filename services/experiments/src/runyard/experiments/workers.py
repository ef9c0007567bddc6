"""Background loops of the experiments service (run under the shared supervisor)."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid

from runyard.experiments.campaigns.service import hpo_results
from runyard.experiments.deps import ServiceRuntime
from runyard.experiments.jobs import runner
from runyard.experiments.tracking.service import liveness
from runyard.shared.db import utcnow


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


async def run_dataset_jobs(runtime: ServiceRuntime) -> None:
    """Dataset generation and import jobs, one at a time per process (replicas share the
    queue through ``SKIP LOCKED``), and the HPO campaigns whose duration budget ran out."""
    worker = runner.Worker(runtime.sessionmaker, runtime.settings, worker_id())
    while True:
        worked = await runner.run_next(worker)
        async with runtime.sessionmaker() as session, session.begin():
            await hpo_results.complete_expired(session)
        if not worked:
            await asyncio.sleep(runtime.settings.job_poll_interval_s)


async def watch_stalled_runs(runtime: ServiceRuntime) -> None:
    """Every ``stall_poll_interval_s``: mark the running experiments that stopped reporting
    (``experiment.stalled``), a batch per transaction until none is left."""
    settings = runtime.settings
    while True:
        while True:
            async with runtime.sessionmaker() as session, session.begin():
                marked = await liveness.mark_stalled(
                    session, now=utcnow(), default_after_s=settings.stale_after_s
                )
            if marked < liveness.STALL_BATCH:
                break
        await asyncio.sleep(settings.stall_poll_interval_s)
