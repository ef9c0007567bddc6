"""Background loops of the experiments service (run under the shared supervisor)."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from datetime import timedelta

from runyard.experiments.artifacts import service as artifacts
from runyard.experiments.artifacts.store import make_store
from runyard.experiments.campaigns.service import hpo_results
from runyard.experiments.deps import ServiceRuntime
from runyard.experiments.jobs import runner
from runyard.experiments.predictions import partitions as prediction_partitions
from runyard.experiments.predictions import service as predictions
from runyard.experiments.tracking.service import epoch_events, liveness
from runyard.shared.db import utcnow
from runyard.shared.logging import get_logger

log = get_logger(__name__)


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


#: The least time between two passes of the dataset-jobs worker woken by commits.
JOB_WAKE_SPACING_S = 1.0


async def run_dataset_jobs(runtime: ServiceRuntime) -> None:
    """Dataset generation and import jobs, one at a time per process (replicas share the
    queue through ``SKIP LOCKED``), and the HPO campaigns whose duration budget ran out."""
    worker = runner.Worker(runtime.sessionmaker, runtime.settings, worker_id())
    while True:
        seen = runtime.work.generation
        worked = await runner.run_next(worker)
        async with runtime.sessionmaker() as session, session.begin():
            await hpo_results.complete_expired(session)
        if not worked:
            # a request of this process that queues a job wakes it, within a second: every
            # commit wakes it (a busy process commits hundreds of times a second, nearly all
            # epochs), and a pass is three transactions
            await runtime.work.wait(
                seen, idle_s=runtime.settings.job_poll_interval_s, min_wait=JOB_WAKE_SPACING_S
            )


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


async def collect_artifact_blobs(runtime: ServiceRuntime) -> None:
    """Every ``artifact_gc_interval_s``: remove the stored blobs no artifact references any
    more (those of deleted experiments, or of a clean-up that was interrupted), and uploads'
    staged copies older than ``artifact_staging_max_age_s`` (of a process killed mid-upload)."""
    settings = runtime.settings
    store = make_store(settings)
    while True:
        while await artifacts.collect_unreferenced(runtime.sessionmaker, store) > 0:
            pass
        before = utcnow() - timedelta(seconds=settings.artifact_staging_max_age_s)
        if swept := await store.sweep_staged(before):
            log.info("experiments.artifacts.staged_swept", removed=swept)
        await asyncio.sleep(settings.artifact_gc_interval_s)


async def write_epoch_events(runtime: ServiceRuntime) -> None:
    """``experiment.epochs_logged`` for the pending epochs older than the window: woken by
    this process's commits (then it lets the window fill), else every ``epoch_events_poll_s``."""
    settings = runtime.settings
    while True:
        seen = runtime.work.generation
        async with runtime.sessionmaker() as session, session.begin():
            written = await epoch_events.write_due(session, window_s=settings.epoch_events_window_s)
        if written >= epoch_events.BATCH:
            continue
        if await runtime.work.wait(seen, idle_s=settings.epoch_events_poll_s):
            await asyncio.sleep(settings.epoch_events_window_s)


async def maintain_prediction_partitions(runtime: ServiceRuntime) -> None:
    """Every ``predictions_partition_interval_s``: the monthly partitions of the prediction log
    for this month and ``predictions_months_ahead`` after it; those older than the retention
    dropped (one replica at a time: advisory lock)."""
    settings = runtime.settings
    while True:
        async with runtime.sessionmaker() as session, session.begin():
            await prediction_partitions.maintain(
                session,
                now=utcnow(),
                months_ahead=settings.predictions_months_ahead,
                retention_months=settings.predictions_retention_months,
            )
        await asyncio.sleep(settings.predictions_partition_interval_s)


async def check_prediction_drift(runtime: ServiceRuntime) -> None:
    """Every ``drift_check_interval_s``: ``model_version.drift_detected`` for the versions whose
    recent confidence distribution moved from their first day's (at most once per cooldown)."""
    settings = runtime.settings
    while True:
        async with runtime.sessionmaker() as session, session.begin():
            await predictions.check_drift(session, now=utcnow(), settings=settings)
        await asyncio.sleep(settings.drift_check_interval_s)
