"""Background loops of the experiments service (run under the shared supervisor)."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid

from runyard.experiments import hpo_results, job_runner
from runyard.experiments.config import Settings
from runyard.shared.runtime import Runtime


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


async def run_dataset_jobs(runtime: Runtime) -> None:
    """Dataset generation and import jobs, one at a time per process (replicas share the
    queue through ``SKIP LOCKED``), and the HPO campaigns whose duration budget ran out."""
    settings = runtime.settings
    assert isinstance(settings, Settings)
    worker = job_runner.Worker(runtime.sessionmaker, settings, worker_id())
    while True:
        worked = await job_runner.run_next(worker)
        async with runtime.sessionmaker() as session, session.begin():
            await hpo_results.complete_expired(session)
        if not worked:
            await asyncio.sleep(settings.job_poll_interval_s)
