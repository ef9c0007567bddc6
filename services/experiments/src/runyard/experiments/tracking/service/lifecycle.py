"""The experiment lifecycle, one use case per action::

    pending ──start──▶ running ──pause──▶ paused
                          ▲                 │
                          └─────resume──────┘
    pending | running | paused ──complete | fail | cancel──▶ completed | failed | cancelled

Every transition bumps the experiment's ``version`` and emits its event with that version as
``sequence``. An action the current status does not allow is a 409 naming the status and the
actions it allows. A transition is a sign of life (``last_seen_at``) and ends a stall (see
``liveness``: stalled is a flag of a running experiment, not a status). Pause and the terminal
actions first write the experiment's pending ``experiment.epochs_logged`` (``epoch_events``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from runyard.experiments import errors
from runyard.experiments.models import Experiment
from runyard.experiments.tracking.schemas import (
    ExperimentCancel,
    ExperimentComplete,
    ExperimentFail,
)
from runyard.experiments.tracking.service import epoch_events
from runyard.experiments.tracking.service.experiments import get_writable_experiment, summary
from runyard.shared.contracts.experiments import (
    ExperimentCancelled,
    ExperimentCompleted,
    ExperimentFailed,
    ExperimentPaused,
    ExperimentResumed,
    ExperimentStarted,
)
from runyard.shared.db import utcnow
from runyard.shared.identity import Principal
from runyard.shared.logging import get_logger
from runyard.shared.outbox import emit

log = get_logger(__name__)


@dataclass(frozen=True)
class Transition:
    sources: frozenset[str]
    target: str


ACTIVE = frozenset({"pending", "running", "paused"})
TRANSITIONS: dict[str, Transition] = {
    "start": Transition(frozenset({"pending"}), "running"),
    "pause": Transition(frozenset({"running"}), "paused"),
    "resume": Transition(frozenset({"paused"}), "running"),
    "complete": Transition(ACTIVE, "completed"),
    "fail": Transition(ACTIVE, "failed"),
    "cancel": Transition(ACTIVE, "cancelled"),
}


def allowed_actions(status: str) -> list[str]:
    return [action for action, rule in TRANSITIONS.items() if status in rule.sources]


def move(experiment: Experiment, action: str) -> None:
    """Take the experiment into the action's status (a new version), or 409."""
    rule = TRANSITIONS[action]
    if experiment.status not in rule.sources:
        raise errors.InvalidTransition(
            action, experiment.status, allowed_actions(experiment.status)
        )
    experiment.status = rule.target
    experiment.stalled_at = None
    experiment.last_seen_at = utcnow()
    experiment.version += 1


async def begin(session: AsyncSession, experiment: Experiment) -> None:
    """pending -> running: the start action, and the first epoch logged to a pending experiment.
    ``started_at`` is set once."""
    move(experiment, "start")
    experiment.started_at = experiment.started_at or utcnow()
    await session.flush()
    payload = ExperimentStarted(
        **await summary(session, experiment), started_at=experiment.started_at
    )
    await emit(session, payload, subject=experiment.id, sequence=experiment.version)


async def start(
    session: AsyncSession, *, principal: Principal, experiment_id: uuid.UUID
) -> Experiment:
    experiment = await get_writable_experiment(
        session, principal=principal, experiment_id=experiment_id
    )
    await begin(session, experiment)
    return experiment


async def pause(
    session: AsyncSession, *, principal: Principal, experiment_id: uuid.UUID
) -> Experiment:
    experiment = await get_writable_experiment(
        session, principal=principal, experiment_id=experiment_id
    )
    await epoch_events.write_pending(session, experiment)
    move(experiment, "pause")
    await session.flush()
    payload = ExperimentPaused(
        **await summary(session, experiment),
        total_epochs=experiment.total_epochs,
        latest_metrics=experiment.metrics,
    )
    await emit(session, payload, subject=experiment.id, sequence=experiment.version)
    return experiment


async def resume(
    session: AsyncSession, *, principal: Principal, experiment_id: uuid.UUID
) -> Experiment:
    experiment = await get_writable_experiment(
        session, principal=principal, experiment_id=experiment_id
    )
    move(experiment, "resume")
    await session.flush()
    payload = ExperimentResumed(
        **await summary(session, experiment), total_epochs=experiment.total_epochs
    )
    await emit(session, payload, subject=experiment.id, sequence=experiment.version)
    return experiment


async def complete(
    session: AsyncSession,
    *,
    principal: Principal,
    experiment_id: uuid.UUID,
    body: ExperimentComplete,
) -> Experiment:
    def record(experiment: Experiment) -> None:
        if experiment.started_at is None:
            # completed without ever being started (results logged elsewhere): it ran from
            # its creation
            experiment.started_at = experiment.created_at
        experiment.metrics = {**experiment.metrics, **body.final_metrics}
        if body.best_epoch is not None:
            experiment.best_epoch = body.best_epoch
        if body.total_epochs is not None:
            experiment.total_epochs = body.total_epochs

    experiment, fields = await _finish(session, principal, experiment_id, "complete", record)
    payload = ExperimentCompleted(**fields)
    await emit(session, payload, subject=experiment.id, sequence=experiment.version)
    return experiment


async def fail(
    session: AsyncSession, *, principal: Principal, experiment_id: uuid.UUID, body: ExperimentFail
) -> Experiment:
    def record(experiment: Experiment) -> None:
        experiment.metrics = {**experiment.metrics, **body.final_metrics}
        experiment.error_message = body.error

    experiment, fields = await _finish(session, principal, experiment_id, "fail", record)
    payload = ExperimentFailed(**fields, error=experiment.error_message)
    await emit(session, payload, subject=experiment.id, sequence=experiment.version)
    return experiment


async def cancel(
    session: AsyncSession,
    *,
    principal: Principal,
    experiment_id: uuid.UUID,
    body: ExperimentCancel,
) -> Experiment:
    def record(experiment: Experiment) -> None:
        experiment.error_message = body.reason

    experiment, fields = await _finish(session, principal, experiment_id, "cancel", record)
    payload = ExperimentCancelled(**fields, reason=experiment.error_message)
    await emit(session, payload, subject=experiment.id, sequence=experiment.version)
    return experiment


async def _finish(
    session: AsyncSession,
    principal: Principal,
    experiment_id: uuid.UUID,
    action: str,
    record: Callable[[Experiment], None],
) -> tuple[Experiment, dict[str, Any]]:
    """What the terminal transitions share: the move, what the request ``record``s, ``ended_at``
    and the wall-clock duration from ``started_at`` (pauses included; none for a never-started
    experiment). Returns the fields of the final event."""
    experiment = await get_writable_experiment(
        session, principal=principal, experiment_id=experiment_id
    )
    await epoch_events.write_pending(session, experiment)
    move(experiment, action)
    record(experiment)
    experiment.ended_at = utcnow()
    experiment.duration_seconds = (
        (experiment.ended_at - experiment.started_at).total_seconds()
        if experiment.started_at
        else None
    )
    await session.flush()
    log.info(
        "experiments.experiment.finished",
        experiment_id=str(experiment.id),
        status=experiment.status,
    )
    return experiment, {**await summary(session, experiment), **ended_fields(experiment)}


def ended_fields(experiment: Experiment) -> dict[str, Any]:
    return {
        "final_metrics": experiment.metrics,
        "best_epoch": experiment.best_epoch,
        "total_epochs": experiment.total_epochs,
        "started_at": experiment.started_at,
        "ended_at": experiment.ended_at,
        "duration_seconds": experiment.duration_seconds,
    }
