"""Training runs: epochs logged one at a time or in batches, idempotent per (experiment, epoch).

The batch is one statement (``repository.runs``), and one more keeps the history's block
summaries (``repository.history.record_runs``); the experiment's total epochs, latest metrics
and best epoch change in the same transaction, under the experiment's row lock, so concurrent
loggers of one experiment cannot lose an update. The batch's ``experiment.epochs_logged`` is
added to the experiment's pending event of the current window (``epoch_events``).
"""

from __future__ import annotations

import uuid
from collections import Counter

from sqlalchemy.ext.asyncio import AsyncSession

from runyard.experiments import errors
from runyard.experiments.models import TERMINAL, Experiment, TrainingRun
from runyard.experiments.tracking.repository import history
from runyard.experiments.tracking.repository import runs as repository
from runyard.experiments.tracking.schemas import RunBatchResult, RunIn
from runyard.experiments.tracking.service import epoch_events
from runyard.experiments.tracking.service.bookkeeping import better, metrics_of, recompute_best
from runyard.experiments.tracking.service.experiments import (
    get_visible_experiment,
    get_writable_experiment,
)
from runyard.experiments.tracking.service.lifecycle import begin
from runyard.experiments.tracking.service.liveness import reporting_again
from runyard.shared.db import utcnow
from runyard.shared.identity import Principal


async def log_runs(
    session: AsyncSession,
    *,
    principal: Principal,
    experiment_id: uuid.UUID,
    runs: list[RunIn],
    locked: Experiment | None = None,
) -> RunBatchResult:
    """The first epoch logged to a pending experiment starts it; a finished one takes none. An
    epoch is a sign of life: a stalled experiment resumes. ``locked``: the experiment, already
    loaded and row-locked by the caller in this transaction (not looked up again)."""
    experiment = locked or await get_writable_experiment(
        session, principal=principal, experiment_id=experiment_id
    )
    if experiment.status in TERMINAL:
        raise errors.ExperimentFinished(experiment.status)
    # the summaries as of now: what the MLflow API's SQL path left to fold comes first
    await epoch_events.fold(session, experiment)
    repeated = sorted(epoch for epoch, n in Counter(r.epoch for r in runs).items() if n > 1)
    if repeated:
        raise errors.RepeatedEpochs(repeated)
    await reporting_again(session, experiment)
    if experiment.status == "pending":
        await begin(session, experiment)

    rows = [run.model_dump() for run in runs]
    # the experiment's row is written once, below (these statements do not read it)
    with session.no_autoflush:
        written = await repository.upsert_runs(session, experiment.id, rows)
        inserted = sum(1 for _epoch, is_new in written if is_new)
        overwritten = {epoch for epoch, is_new in written if not is_new}
        await history.record_runs(
            session,
            experiment.id,
            inserted=[epoch for epoch, is_new in written if is_new],
            rewritten=sorted(overwritten),
        )
    by_epoch = {row["epoch"]: row for row in rows}
    changed = sorted((by_epoch[epoch] for epoch, _ in written), key=lambda r: int(r["epoch"]))

    experiment.total_epochs += inserted
    if changed:
        latest = changed[-1]
        if experiment.last_epoch is None or latest["epoch"] >= experiment.last_epoch:
            experiment.last_epoch = latest["epoch"]
            experiment.metrics = {**experiment.metrics, **metrics_of(latest)}
        # the best epoch's value rewritten (or gone): any epoch may be the best now. Another
        # metric of that epoch rewritten leaves its value, and the best, as they were.
        best = experiment.best_epoch
        if (
            best is not None
            and best in overwritten
            and metrics_of(by_epoch[best]).get(experiment.best_metric) != experiment.best_value
        ):
            await session.flush()
            await recompute_best(session, experiment)
        else:
            for row in changed:
                value = metrics_of(row).get(experiment.best_metric)
                if value is not None and better(experiment.best_mode, value, experiment.best_value):
                    experiment.best_epoch, experiment.best_value = row["epoch"], value
    await session.flush()
    if changed:
        await epoch_events.note(
            session,
            experiment,
            first_epoch=changed[0]["epoch"],
            last_epoch=changed[-1]["epoch"],
            written=len(changed),
            inserted=inserted,
            latest_metrics=metrics_of(changed[-1]),
            logged_at=utcnow(),
        )
    return RunBatchResult(
        experiment_id=experiment.id,
        received=len(runs),
        inserted=inserted,
        updated=len(written) - inserted,
        unchanged=len(runs) - len(written),
        status=experiment.status,
        total_epochs=experiment.total_epochs,
        best_epoch=experiment.best_epoch,
        best_value=experiment.best_value,
        metrics=experiment.metrics,
    )


async def list_runs(
    session: AsyncSession,
    *,
    principal: Principal,
    experiment_id: uuid.UUID,
    limit: int,
    cursor: str | None,
) -> tuple[list[TrainingRun], str | None]:
    """Epochs in ascending order."""
    experiment = await get_visible_experiment(
        session, principal=principal, experiment_id=experiment_id
    )
    return await repository.list_runs(session, experiment.id, limit=limit, cursor=cursor)
