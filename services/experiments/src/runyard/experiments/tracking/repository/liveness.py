"""Queries of run liveness: the heartbeat's one-statement write, and the silent running
experiments the stall watcher claims."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import DateTime, Select, func, literal, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from runyard.experiments.models import TERMINAL, Experiment, PendingEpochs
from runyard.shared.identity import Principal


async def touch(
    session: AsyncSession, *, principal: Principal, experiment_id: uuid.UUID, now: datetime
) -> tuple[bool, datetime | None]:
    """``last_seen_at = now`` on the caller's unfinished experiment, in one UPDATE: no version,
    no ``updated_at``, no event. Returns whether a row was written and its ``stalled_at``."""
    statement = (
        update(Experiment)
        .where(Experiment.id == experiment_id, Experiment.status.not_in(TERMINAL))
        .values(last_seen_at=now, updated_at=Experiment.updated_at)
        .returning(Experiment.stalled_at)
        .execution_options(synchronize_session=False)
    )
    if not principal.is_admin:
        statement = statement.where(Experiment.owner_id == principal.user_id)
    row = (await session.execute(statement)).one_or_none()
    return (row is not None, row[0] if row is not None else None)


def silent_running(*, now: datetime, default_after_s: float, limit: int) -> Select[Experiment]:
    """Running experiments not yet stalled whose last sign of life (heartbeat, epoch, or the
    start) is older than their limit; locked, skipping rows another worker (or a heartbeat)
    holds, so replicas never mark one twice."""
    limit_s = func.coalesce(Experiment.stale_after_s, default_after_s)
    # an epoch of the MLflow API's SQL path not folded into the run's row yet is one too
    owed = (
        select(PendingEpochs.fold_seen_at)
        .where(PendingEpochs.experiment_id == Experiment.id)
        .scalar_subquery()
    )
    last_sign = func.greatest(Experiment.last_seen_at, Experiment.started_at, owed)
    return (
        select(Experiment)
        .where(
            Experiment.status == "running",
            Experiment.stalled_at.is_(None),
            # a run deleted in MLflow's API (soft) while running is gone, not silent
            Experiment.deleted_at.is_(None),
            last_sign
            < literal(now, DateTime(timezone=True)) - func.make_interval(0, 0, 0, 0, 0, 0, limit_s),
        )
        .order_by(last_sign)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    )
