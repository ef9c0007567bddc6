"""Run liveness: heartbeats, and running experiments that stopped reporting.

A training process reports by its heartbeat (``POST /experiments/{id}/heartbeat``, the SDK
sends one every 30 s) and by logging epochs (so older clients and curl users count as alive);
both set ``last_seen_at``, and so does every lifecycle action. A running experiment silent for
longer than its ``stale_after_s`` (else ``EXPERIMENTS_STALE_AFTER_S``) since that, or since its
start, gets ``stalled_at`` and publishes ``experiment.stalled`` once.

Stalled is a flag on a ``running`` experiment, not a status of its own: the lifecycle, the
filter language (``status = 'running'``) and every client keep their six statuses, and a run
that was only slow goes on without anyone acting. Its next heartbeat or epoch clears the flag
and publishes ``experiment.resumed`` (with the ``stalled_at`` it had); a lifecycle transition
(``lifecycle.move``) clears it silently, its own event telling the new status.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from runyard.experiments.models import Experiment
from runyard.experiments.tracking.repository import liveness as repository
from runyard.experiments.tracking.service import epoch_events
from runyard.experiments.tracking.service.experiments import get_writable_experiment, summary
from runyard.shared.contracts.experiments import ExperimentResumed, ExperimentStalled
from runyard.shared.db import utcnow
from runyard.shared.identity import Principal, require_writer
from runyard.shared.logging import get_logger
from runyard.shared.outbox import emit

log = get_logger(__name__)

#: experiments the stall watcher marks in one transaction
STALL_BATCH = 100


async def heartbeat(
    session: AsyncSession, *, principal: Principal, experiment_id: uuid.UUID
) -> None:
    """The training process is alive. One UPDATE in the common case; a stalled experiment
    resumes. A finished experiment takes nothing (and is no error: the heartbeat of a run whose
    end just went out); another user's is a 404, a viewer's heartbeat a 403."""
    require_writer(principal)
    written, stalled_at = await repository.touch(
        session, principal=principal, experiment_id=experiment_id, now=utcnow()
    )
    if not written:
        # 404 unless it is the caller's finished experiment
        await get_writable_experiment(session, principal=principal, experiment_id=experiment_id)
        return
    if stalled_at is not None:
        experiment = await get_writable_experiment(
            session, principal=principal, experiment_id=experiment_id
        )
        await reporting_again(session, experiment)


async def reporting_again(session: AsyncSession, experiment: Experiment) -> None:
    """A sign of life from the (row-locked) experiment: a stalled one is running as before,
    announced with ``experiment.resumed``; otherwise nothing."""
    experiment.last_seen_at = utcnow()
    stalled_at = experiment.stalled_at
    if stalled_at is None:
        return
    experiment.stalled_at = None
    experiment.version += 1
    await session.flush()
    payload = ExperimentResumed(
        **await summary(session, experiment),
        total_epochs=experiment.total_epochs,
        stalled_at=stalled_at,
    )
    await emit(session, payload, subject=experiment.id, sequence=experiment.version)
    log.info("experiments.experiment.reporting_again", experiment_id=str(experiment.id))


async def mark_stalled(
    session: AsyncSession, *, now: datetime, default_after_s: float, limit: int = STALL_BATCH
) -> int:
    """Flag the running experiments silent for longer than their limit at ``now`` and publish
    ``experiment.stalled`` for each, once (replicas skip each other's rows). Returns how many."""
    found = (
        await session.scalars(
            repository.silent_running(now=now, default_after_s=default_after_s, limit=limit)
        )
    ).all()
    for experiment in found:
        await epoch_events.fold(session, experiment)  # its last epochs' summaries first
        experiment.stalled_at = now
        experiment.version += 1
        await session.flush()
        payload = ExperimentStalled(
            **await summary(session, experiment),
            total_epochs=experiment.total_epochs,
            latest_metrics=experiment.metrics,
            started_at=experiment.started_at,
            last_seen_at=experiment.last_seen_at,
            stalled_at=now,
            stale_after_s=float(experiment.stale_after_s or default_after_s),
        )
        await emit(session, payload, subject=experiment.id, sequence=experiment.version)
        log.warning(
            "experiments.experiment.stalled",
            experiment_id=str(experiment.id),
            last_seen_at=str(experiment.last_seen_at),
        )
    return len(found)
