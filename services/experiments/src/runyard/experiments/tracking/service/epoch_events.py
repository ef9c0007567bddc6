"""``experiment.epochs_logged``, one event per experiment and short window, not per request.

A training loop logs an epoch every few milliseconds; an event per request made every consumer
(webhooks, notifications, the console, the broker) pay for each one. A request that writes
epochs adds them to the experiment's ``pending_epochs`` row in its own transaction (``note``);
the ``epoch-events`` worker turns each row older than the window into one event and deletes it,
in one transaction (``write_due``), so nothing noted is lost or written twice. A lifecycle change
(pause, complete, fail, cancel) writes the experiment's pending event first (``write_pending``):
consumers see its epochs before it ends.

The event of a window: first/last epoch over all its requests, ``epochs_written`` the sum of the
requests' (an epoch rewritten in two requests counts twice), ``epochs_inserted`` the new epochs,
``latest_metrics`` those of the highest epoch written, totals and best as they are when the
event is written.

The MLflow API's SQL path (``mlflow_log_epochs``, migration 0022) writes a training loop's
epochs without the run's summaries: it leaves on the pending row what they owe (``fold_*``).
``fold`` writes them, under the run's lock: the run's totals, latest metrics, best epoch and
last sign of life, and the history blocks the epochs lie in, rebuilt exactly from the epoch
rows (``history.record_runs``). The worker folds each row before its event; every other writer
of a run folds first (``log_runs``, a lifecycle change through ``write_pending``), and so does a
read that must see the summaries as of now (``fold_owned``). Every writer takes the run's row
lock before the pending row's, the worker too: none waits for another in the opposite order.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Float, Integer, bindparam, case, delete, func, select, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.types import DateTime

from runyard.experiments.models import SCHEMA, Experiment, PendingEpochs
from runyard.experiments.tracking.repository import history
from runyard.experiments.tracking.repository.runs import cast_table
from runyard.shared.contracts.experiments import ExperimentEpochsLogged
from runyard.shared.outbox import emit

#: rows written per transaction by the worker
BATCH = 200

_TABLE = cast_table(PendingEpochs.__table__)
#: what the summaries owe (``fold``)
_FOLD = (
    _TABLE.c.fold_blocks,
    _TABLE.c.fold_inserted,
    _TABLE.c.fold_last_epoch,
    _TABLE.c.fold_metrics,
    _TABLE.c.fold_best_epoch,
    _TABLE.c.fold_best_value,
    _TABLE.c.fold_seen_at,
)
_ROW = (
    _TABLE.c.experiment_id,
    _TABLE.c.first_epoch,
    _TABLE.c.last_epoch,
    _TABLE.c.epochs_written,
    _TABLE.c.epochs_inserted,
    _TABLE.c.latest_metrics,
    _TABLE.c.logged_at,
    *_FOLD,
)
#: the run's fold taken off its pending row (the row stays for its event): one round trip
_TAKE_FOLD = text(f"""
    UPDATE {SCHEMA}.pending_epochs SET fold_blocks = NULL, fold_inserted = 0,
        fold_last_epoch = NULL, fold_metrics = NULL, fold_best_epoch = NULL,
        fold_best_value = NULL, fold_seen_at = NULL
    WHERE experiment_id = :experiment_id AND fold_blocks IS NOT NULL
    RETURNING old.fold_blocks, old.fold_inserted, old.fold_last_epoch, old.fold_metrics,
              old.fold_best_epoch, old.fold_best_value, old.fold_seen_at
""").columns(  # noqa: S608 (constants only)
    fold_blocks=ARRAY(Integer),
    fold_inserted=Integer,
    fold_last_epoch=Integer,
    fold_metrics=JSONB,
    fold_best_epoch=Integer,
    fold_best_value=Float,
    fold_seen_at=DateTime(timezone=True),
)


def _note_statement() -> Any:
    """Built once: every request runs the same statement with new parameters."""
    names = (
        "experiment_id",
        "first_epoch",
        "last_epoch",
        "epochs_written",
        "epochs_inserted",
        "latest_metrics",
        "first_logged_at",
        "logged_at",
    )
    stmt = insert(_TABLE).values(
        {name: bindparam(name, type_=_TABLE.c[name].type) for name in names}
    )
    new = stmt.excluded
    return stmt.on_conflict_do_update(
        index_elements=[_TABLE.c.experiment_id],
        set_={
            "first_epoch": func.least(_TABLE.c.first_epoch, new.first_epoch),
            "last_epoch": func.greatest(_TABLE.c.last_epoch, new.last_epoch),
            "epochs_written": _TABLE.c.epochs_written + new.epochs_written,
            "epochs_inserted": _TABLE.c.epochs_inserted + new.epochs_inserted,
            "latest_metrics": case(
                (new.last_epoch >= _TABLE.c.last_epoch, new.latest_metrics),
                else_=_TABLE.c.latest_metrics,
            ),
            "logged_at": new.logged_at,
        },
    )


NOTE = _note_statement()


async def note(
    session: AsyncSession,
    experiment: Experiment,
    *,
    first_epoch: int,
    last_epoch: int,
    written: int,
    inserted: int,
    latest_metrics: dict[str, Any],
    logged_at: datetime,
) -> None:
    """Add a request's epochs to the experiment's pending event (the caller holds the
    experiment's row lock, so requests of one experiment add up one after another)."""
    await session.execute(
        NOTE,
        {
            "experiment_id": experiment.id,
            "first_epoch": first_epoch,
            "last_epoch": last_epoch,
            "epochs_written": written,
            "epochs_inserted": inserted,
            "latest_metrics": latest_metrics,
            "first_logged_at": logged_at,
            "logged_at": logged_at,
        },
    )


async def _apply(session: AsyncSession, experiment: Experiment, row: Any) -> None:
    """What ``row`` (a pending row's fold columns) says the summaries owe, written: the run's
    row (``experiment``, locked) and the history blocks of ``fold_blocks``, rebuilt."""
    if row.fold_blocks is None:
        return
    experiment.total_epochs += row.fold_inserted
    if row.fold_last_epoch is not None:
        # merged only at or above the run's last epoch (mlflow_log_epochs): the new highest
        experiment.last_epoch = max(row.fold_last_epoch, experiment.last_epoch or 0)
        experiment.metrics = {**experiment.metrics, **row.fold_metrics}
    if row.fold_best_value is not None:
        experiment.best_epoch, experiment.best_value = row.fold_best_epoch, row.fold_best_value
    if row.fold_seen_at is not None and (
        experiment.last_seen_at is None or row.fold_seen_at > experiment.last_seen_at
    ):
        experiment.last_seen_at = row.fold_seen_at
    await history.record_runs(
        session,
        experiment.id,
        inserted=(),
        rewritten=[block << history.BASE_SHIFT for block in row.fold_blocks],
    )


async def fold(session: AsyncSession, experiment: Experiment) -> bool:
    """Write what the run's summaries owe now (``experiment`` locked by the caller, in this
    transaction); the pending row keeps its event. True if anything was owed."""
    row = (await session.execute(_TAKE_FOLD, {"experiment_id": experiment.id})).first()
    if row is None:
        return False
    await _apply(session, experiment, row)
    await session.flush()
    return True


async def fold_owned(session: AsyncSession, *conditions: ColumnElement[bool]) -> int:
    """Fold the runs meeting ``conditions`` (on ``Experiment``; none: every run) whose
    summaries owe anything, for a read that must see them as of now (a search by metrics).
    They are found from the pending rows (at most one per running run), not from the runs, and
    each is locked in id order, as the worker locks them. How many were folded."""
    owed = (
        select(_TABLE.c.experiment_id)
        .join(Experiment, Experiment.id == _TABLE.c.experiment_id)
        .where(_TABLE.c.fold_blocks.is_not(None), *conditions)
    )
    ids = list((await session.scalars(owed)).all())
    if not ids:
        return 0
    runs = await session.scalars(
        select(Experiment)
        .where(Experiment.id.in_(ids))
        .order_by(Experiment.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    folded = 0
    for run in runs:
        folded += await fold(session, run)
    return folded


async def _write(session: AsyncSession, experiment: Experiment, row: Any) -> None:
    await emit(
        session,
        ExperimentEpochsLogged(
            experiment_id=experiment.id,
            owner_id=experiment.owner_id,
            name=experiment.name,
            status=experiment.status,
            first_epoch=row.first_epoch,
            last_epoch=row.last_epoch,
            epochs_written=row.epochs_written,
            epochs_inserted=row.epochs_inserted,
            total_epochs=experiment.total_epochs,
            latest_metrics=row.latest_metrics,
            best_epoch=experiment.best_epoch,
            best_value=experiment.best_value,
            logged_at=row.logged_at,
        ),
        subject=experiment.id,
    )


async def write_pending(session: AsyncSession, experiment: Experiment) -> bool:
    """Write the experiment's pending event now (before a lifecycle event); True if it had
    one. ``experiment`` is locked and as its last request left it."""
    row = (
        await session.execute(
            delete(_TABLE).where(_TABLE.c.experiment_id == experiment.id).returning(*_ROW)
        )
    ).first()
    if row is None:
        return False
    await _apply(session, experiment, row)
    await _write(session, experiment, row)
    return True


async def write_due(session: AsyncSession, *, window_s: float, limit: int = BATCH) -> int:
    """Fold and write the events of the pending rows older than ``window_s`` (oldest first;
    runs another transaction holds are skipped, and taken next time); how many were written.
    The runs are locked first, in id order, then their pending rows: the order every writer of
    a run takes its locks in."""
    due = list(
        (
            await session.scalars(
                select(_TABLE.c.experiment_id)
                .where(
                    _TABLE.c.first_logged_at
                    <= func.now() - func.make_interval(0, 0, 0, 0, 0, 0, window_s)
                )
                .order_by(_TABLE.c.first_logged_at)
                .limit(limit)
            )
        ).all()
    )
    if not due:
        return 0
    experiments = {
        e.id: e
        for e in await session.scalars(
            select(Experiment)
            .where(Experiment.id.in_(due))
            .order_by(Experiment.id)
            .with_for_update(skip_locked=True)
            .execution_options(populate_existing=True)
        )
    }
    if not experiments:
        return 0
    rows = (
        await session.execute(
            delete(_TABLE).where(_TABLE.c.experiment_id.in_(list(experiments))).returning(*_ROW)
        )
    ).all()
    for row in sorted(rows, key=lambda r: r.logged_at):
        experiment = experiments[row.experiment_id]
        await _apply(session, experiment, row)
        await _write(session, experiment, row)
    return len(rows)
