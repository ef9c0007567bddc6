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
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, case, delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from runyard.experiments.models import Experiment, PendingEpochs
from runyard.experiments.tracking.repository.runs import cast_table
from runyard.shared.contracts.experiments import ExperimentEpochsLogged
from runyard.shared.outbox import emit

#: rows written per transaction by the worker
BATCH = 200

_TABLE = cast_table(PendingEpochs.__table__)
_ROW = (
    _TABLE.c.experiment_id,
    _TABLE.c.first_epoch,
    _TABLE.c.last_epoch,
    _TABLE.c.epochs_written,
    _TABLE.c.epochs_inserted,
    _TABLE.c.latest_metrics,
    _TABLE.c.logged_at,
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
    await _write(session, experiment, row)
    return True


async def write_due(session: AsyncSession, *, window_s: float, limit: int = BATCH) -> int:
    """Write the events of the pending rows older than ``window_s`` (oldest first, rows other
    transactions hold skipped); how many were written."""
    due = (
        select(_TABLE.c.experiment_id)
        .where(
            _TABLE.c.first_logged_at <= func.now() - func.make_interval(0, 0, 0, 0, 0, 0, window_s)
        )
        .order_by(_TABLE.c.first_logged_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    rows = (
        await session.execute(
            delete(_TABLE).where(_TABLE.c.experiment_id.in_(due)).returning(*_ROW)
        )
    ).all()
    if not rows:
        return 0
    experiments = {
        e.id: e
        for e in await session.scalars(
            select(Experiment).where(Experiment.id.in_([row.experiment_id for row in rows]))
        )
    }
    for row in sorted(rows, key=lambda r: r.logged_at):
        experiment = experiments.get(row.experiment_id)
        if experiment is not None:  # deleted since: its rows went with it
            await _write(session, experiment, row)
    return len(rows)
