"""Soft delete of runs (Runyard experiments), alone or with their experiment (project), as
MLflow does: deleting an experiment deletes its runs, restoring it restores them all.

A deleted run gets ``deleted_at`` and publishes ``experiment.deleted`` (for consumers it is
gone); a restored one publishes ``experiment.restored``.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from runyard.experiments.models import Experiment
from runyard.experiments.tracking.service import epoch_events
from runyard.experiments.tracking.service.experiments import summary
from runyard.shared.contracts.experiments import ExperimentDeleted, ExperimentRestored
from runyard.shared.db import utcnow
from runyard.shared.outbox import emit


async def delete(session: AsyncSession, run: Experiment) -> None:
    """Deleting a deleted run changes nothing."""
    if run.deleted_at is not None:
        return
    await epoch_events.write_pending(session, run)  # its last epochs before it goes
    run.deleted_at = utcnow()
    run.version += 1
    await session.flush()
    await emit(
        session,
        ExperimentDeleted(**await summary(session, run)),
        subject=run.id,
        sequence=run.version,
    )


async def restore(session: AsyncSession, run: Experiment) -> None:
    """Restoring an active run changes nothing."""
    if run.deleted_at is None:
        return
    run.deleted_at = None
    run.version += 1
    await session.flush()
    await emit(
        session,
        ExperimentRestored(**await summary(session, run)),
        subject=run.id,
        sequence=run.version,
    )


async def runs_of_project(
    session: AsyncSession, project_id: uuid.UUID, *, deleted: bool
) -> list[Experiment]:
    """The project's runs that are (``deleted``) or are not deleted, locked, oldest first."""
    condition = Experiment.deleted_at.is_not(None) if deleted else Experiment.deleted_at.is_(None)
    rows = await session.scalars(
        select(Experiment)
        .where(Experiment.project_id == project_id, condition)
        .order_by(Experiment.created_at, Experiment.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return list(rows)


async def delete_project_runs(session: AsyncSession, project_id: uuid.UUID) -> None:
    for run in await runs_of_project(session, project_id, deleted=False):
        await delete(session, run)


async def restore_project_runs(session: AsyncSession, project_id: uuid.UUID) -> None:
    for run in await runs_of_project(session, project_id, deleted=True):
        await restore(session, run)
