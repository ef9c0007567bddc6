"""Experiment use cases. They mutate, write outbox events and flush; they never commit."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from runyard.experiments import repository
from runyard.experiments.models import Experiment
from runyard.experiments.schemas import ExperimentComplete, ExperimentCreate
from runyard.shared.contracts.experiments import ExperimentCompleted, ExperimentCreated
from runyard.shared.db import new_id, utcnow
from runyard.shared.events import EventPayload, make_event
from runyard.shared.http import ProblemError
from runyard.shared.identity import Principal
from runyard.shared.outbox import add_event

SOURCE = "/runyard/experiments"
TERMINAL = {"completed", "failed", "cancelled"}


def _summary(experiment: Experiment) -> dict[str, Any]:
    return {
        "experiment_id": experiment.id,
        "name": experiment.name,
        "owner_id": experiment.owner_id,
        "model_type": experiment.model_type,
        "dataset_id": experiment.dataset_id,
        "status": experiment.status,
    }


async def _publish(session: AsyncSession, experiment: Experiment, payload: EventPayload) -> None:
    await add_event(
        session,
        make_event(payload, source=SOURCE, subject=experiment.id, sequence=experiment.version),
    )


async def create_experiment(
    session: AsyncSession, *, principal: Principal, data: ExperimentCreate
) -> Experiment:
    experiment = Experiment(
        id=new_id(),
        owner_id=principal.user_id,
        status="pending",
        metrics={},
        total_epochs=0,
        version=1,
        **data.model_dump(),
    )
    session.add(experiment)
    await session.flush()
    await _publish(session, experiment, ExperimentCreated(**_summary(experiment)))
    return experiment


async def get_visible_experiment(
    session: AsyncSession, *, principal: Principal, experiment_id: Any, for_update: bool = False
) -> Experiment:
    experiment = await (
        repository.get_experiment_for_update(session, experiment_id)
        if for_update
        else repository.get_experiment(session, experiment_id)
    )
    if experiment is None or (experiment.owner_id != principal.user_id and not principal.is_admin):
        raise ProblemError(404, "Not Found", "No such experiment.")
    return experiment


async def complete_experiment(
    session: AsyncSession, *, principal: Principal, experiment_id: Any, data: ExperimentComplete
) -> Experiment:
    experiment = await get_visible_experiment(
        session, principal=principal, experiment_id=experiment_id, for_update=True
    )
    if experiment.status in TERMINAL:
        raise ProblemError(
            409,
            "Conflict",
            f"Experiment is {experiment.status}; it cannot be completed.",
            current_status=experiment.status,
        )
    now = utcnow()
    experiment.started_at = experiment.started_at or experiment.created_at
    experiment.ended_at = now
    experiment.status = "completed"
    experiment.metrics = {**experiment.metrics, **data.final_metrics}
    if data.best_epoch is not None:
        experiment.best_epoch = data.best_epoch
    if data.total_epochs is not None:
        experiment.total_epochs = data.total_epochs
    experiment.version += 1
    await session.flush()
    await _publish(
        session,
        experiment,
        ExperimentCompleted(
            **_summary(experiment),
            final_metrics=experiment.metrics,
            best_epoch=experiment.best_epoch,
            total_epochs=experiment.total_epochs,
            started_at=experiment.started_at,
            ended_at=experiment.ended_at,
            duration_seconds=(now - experiment.started_at).total_seconds(),
        ),
    )
    return experiment
