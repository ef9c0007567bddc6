"""Experiment use cases: CRUD and the lifecycle. They mutate, write outbox events and flush; they
never commit (the request's session commits after the endpoint returns).

Lifecycle::

    pending ──start──▶ running ──pause──▶ paused
                          ▲                 │
                          └─────resume──────┘
    pending | running | paused ──complete | fail | cancel──▶ completed | failed | cancelled

Every transition bumps the experiment's ``version`` and publishes its event with that version
as ``sequence``. An action the current status does not allow is a 409 naming the status.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from runyard.experiments import access, bookkeeping, repository, tagging
from runyard.experiments.models import TERMINAL, Dataset, Experiment, ExperimentTag, Tag
from runyard.experiments.schemas import (
    ExperimentCancel,
    ExperimentComplete,
    ExperimentCreate,
    ExperimentFail,
    ExperimentUpdate,
)
from runyard.shared.contracts.experiments import (
    ExperimentCancelled,
    ExperimentCompleted,
    ExperimentCreated,
    ExperimentDeleted,
    ExperimentFailed,
    ExperimentPaused,
    ExperimentResumed,
    ExperimentStarted,
    ExperimentUpdated,
)
from runyard.shared.db import new_id, utcnow
from runyard.shared.events import EventPayload, make_event
from runyard.shared.http import ProblemError
from runyard.shared.identity import Principal, require_writer
from runyard.shared.logging import get_logger
from runyard.shared.outbox import add_event

log = get_logger(__name__)

SOURCE = "/runyard/experiments"
#: metrics where a higher value is better; any other best_metric defaults to "min"
HIGHER_IS_BETTER = ("acc", "f1", "auc", "precision", "recall", "score", "iou", "map")


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


def default_best_mode(metric: str) -> str:
    lowered = metric.lower()
    return "max" if any(word in lowered for word in HIGHER_IS_BETTER) else "min"


# --- events ------------------------------------------------------------------------------------


async def summary(session: AsyncSession, experiment: Experiment) -> dict[str, Any]:
    """The fields every experiment event carries, owner and dataset names included."""
    owner = await repository.get_user(session, experiment.owner_id)
    return {
        "experiment_id": experiment.id,
        "name": experiment.name,
        "owner_id": experiment.owner_id,
        "model_type": experiment.model_type,
        "dataset_id": experiment.dataset_id,
        "status": experiment.status,
        "owner_username": owner.username if owner else None,
        "owner_email": owner.email if owner else None,
        "owner_full_name": owner.full_name if owner else None,
        "dataset_name": await repository.dataset_name(session, experiment.dataset_id),
    }


async def publish(session: AsyncSession, experiment: Experiment, payload: EventPayload) -> None:
    await add_event(
        session,
        make_event(payload, source=SOURCE, subject=experiment.id, sequence=experiment.version),
    )


def ended_fields(experiment: Experiment) -> dict[str, Any]:
    return {
        "final_metrics": experiment.metrics,
        "best_epoch": experiment.best_epoch,
        "total_epochs": experiment.total_epochs,
        "started_at": experiment.started_at,
        "ended_at": experiment.ended_at,
        "duration_seconds": experiment.duration_seconds,
    }


# --- reading -----------------------------------------------------------------------------------


async def get_visible_experiment(
    session: AsyncSession, *, principal: Principal, experiment_id: uuid.UUID
) -> Experiment:
    experiment = await repository.get_experiment(session, experiment_id)
    access.check_read(principal, experiment, "experiment")
    assert experiment is not None
    return experiment


async def get_writable_experiment(
    session: AsyncSession, *, principal: Principal, experiment_id: uuid.UUID
) -> Experiment:
    """The experiment, row-locked until the transaction ends; 403 for viewers, 404 if not theirs."""
    require_writer(principal)
    experiment = await repository.get_experiment_for_update(session, experiment_id)
    access.check_write(principal, experiment, "experiment")
    assert experiment is not None
    return experiment


# --- create, update, delete --------------------------------------------------------------------


def name_taken(name: str) -> dict[str, ProblemError]:
    return {
        "uq_experiments_owner_id_name": repository.conflict(
            f"You already have an experiment named {name!r}.", field="name"
        )
    }


async def check_dataset(
    session: AsyncSession, principal: Principal, owner_id: uuid.UUID, dataset_id: uuid.UUID
) -> Dataset:
    """A dataset an experiment may use: one the experiment's owner (or an admin) can change."""
    dataset = await repository.get_dataset(session, dataset_id)
    if dataset is None or not (principal.is_admin or dataset.owner_id == owner_id):
        raise ProblemError(
            422,
            "Validation failed",
            "No such dataset.",
            errors=[
                {"loc": ["body", "dataset_id"], "msg": "no such dataset", "type": "value_error"}
            ],
        )
    return dataset


async def create_experiment(
    session: AsyncSession, *, principal: Principal, data: ExperimentCreate
) -> Experiment:
    require_writer(principal)
    if data.dataset_id is not None:
        await check_dataset(session, principal, principal.user_id, data.dataset_id)
    values = data.model_dump(exclude={"tags", "best_mode"})
    experiment = Experiment(
        id=new_id(),
        owner_id=principal.user_id,
        status="pending",
        metrics={},
        total_epochs=0,
        version=1,
        tags=[],
        best_mode=data.best_mode or default_best_mode(data.best_metric),
        **values,
    )
    async with repository.unique_or_conflict(session, name_taken(data.name)):
        session.add(experiment)
    for tag in data.tags:
        await tagging.attach(session, principal=principal, experiment=experiment, tag=tag)
    await publish(session, experiment, ExperimentCreated(**await summary(session, experiment)))
    log.info("experiments.experiment.created", experiment_id=str(experiment.id))
    return experiment


NOT_NULLABLE = {"name", "config", "hyperparameters", "best_metric", "best_mode"}


async def update_experiment(
    session: AsyncSession, *, principal: Principal, experiment_id: uuid.UUID, data: ExperimentUpdate
) -> Experiment:
    experiment = await get_writable_experiment(
        session, principal=principal, experiment_id=experiment_id
    )
    changes = data.model_dump(exclude_unset=True)
    nulls = sorted(k for k, v in changes.items() if v is None and k in NOT_NULLABLE)
    if nulls:
        raise ProblemError(
            422,
            "Validation failed",
            f"{', '.join(nulls)} cannot be null.",
            errors=[
                {"loc": ["body", k], "msg": "may not be null", "type": "value_error"} for k in nulls
            ],
        )
    if changes.get("dataset_id") is not None:
        await check_dataset(session, principal, experiment.owner_id, changes["dataset_id"])
    if "best_metric" in changes and "best_mode" not in changes:
        changes["best_mode"] = default_best_mode(changes["best_metric"])
    changed = sorted(k for k, v in changes.items() if getattr(experiment, k) != v)
    if not changed:
        return experiment
    async with repository.unique_or_conflict(session, name_taken(changes.get("name", ""))):
        for key in changed:
            setattr(experiment, key, changes[key])
        if {"best_metric", "best_mode"} & set(changed):
            await bookkeeping.recompute_best(session, experiment)
        experiment.version += 1
    await publish(
        session,
        experiment,
        ExperimentUpdated(**await summary(session, experiment), changed=changed),
    )
    return experiment


async def delete_experiment(
    session: AsyncSession, *, principal: Principal, experiment_id: uuid.UUID
) -> None:
    """Delete the experiment with its runs and tag links; tag usage counts go down with them."""
    experiment = await get_writable_experiment(
        session, principal=principal, experiment_id=experiment_id
    )
    fields = await summary(session, experiment)
    experiment.version += 1
    await publish(session, experiment, ExperimentDeleted(**fields))
    await session.execute(
        update(Tag)
        .where(
            Tag.id.in_(
                select(ExperimentTag.tag_id).where(ExperimentTag.experiment_id == experiment.id)
            )
        )
        .values(usage_count=Tag.usage_count - 1, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    await session.execute(delete(Experiment).where(Experiment.id == experiment.id))
    session.expunge(experiment)
    log.info("experiments.experiment.deleted", experiment_id=str(experiment_id))


# --- lifecycle ---------------------------------------------------------------------------------


def invalid_transition(experiment: Experiment, action: str) -> ProblemError:
    return ProblemError(
        409,
        "Conflict",
        f"Cannot {action} an experiment that is {experiment.status}.",
        current_status=experiment.status,
        allowed_actions=allowed_actions(experiment.status),
    )


async def start(session: AsyncSession, experiment: Experiment) -> None:
    """pending -> running (also done by the first epoch logged to a pending experiment)."""
    if experiment.status not in TRANSITIONS["start"].sources:
        raise invalid_transition(experiment, "start")
    experiment.status = "running"
    experiment.started_at = experiment.started_at or utcnow()
    experiment.version += 1
    await session.flush()
    await publish(
        session,
        experiment,
        ExperimentStarted(**await summary(session, experiment), started_at=experiment.started_at),
    )


async def transition(
    session: AsyncSession,
    *,
    principal: Principal,
    experiment_id: uuid.UUID,
    action: str,
    body: ExperimentComplete | ExperimentFail | ExperimentCancel | None = None,
) -> Experiment:
    experiment = await get_writable_experiment(
        session, principal=principal, experiment_id=experiment_id
    )
    rule = TRANSITIONS[action]
    if experiment.status not in rule.sources:
        raise invalid_transition(experiment, action)
    if action == "start":
        await start(session, experiment)
        return experiment
    experiment.status = rule.target
    experiment.version += 1
    if action in ("pause", "resume"):
        await session.flush()
        fields = await summary(session, experiment)
        if action == "pause":
            payload: EventPayload = ExperimentPaused(
                **fields, total_epochs=experiment.total_epochs, latest_metrics=experiment.metrics
            )
        else:
            payload = ExperimentResumed(**fields, total_epochs=experiment.total_epochs)
        await publish(session, experiment, payload)
        return experiment

    # terminal: complete | fail | cancel
    now = utcnow()
    if action == "complete" and experiment.started_at is None:
        # completed without ever being started (results logged elsewhere): it ran from creation
        experiment.started_at = experiment.created_at
    experiment.ended_at = now
    experiment.duration_seconds = (
        (now - experiment.started_at).total_seconds() if experiment.started_at else None
    )
    if isinstance(body, ExperimentComplete):
        experiment.metrics = {**experiment.metrics, **body.final_metrics}
        if body.best_epoch is not None:
            experiment.best_epoch = body.best_epoch
        if body.total_epochs is not None:
            experiment.total_epochs = body.total_epochs
    elif isinstance(body, ExperimentFail):
        experiment.metrics = {**experiment.metrics, **body.final_metrics}
        experiment.error_message = body.error
    elif isinstance(body, ExperimentCancel):
        experiment.error_message = body.reason
    await session.flush()
    fields = {**await summary(session, experiment), **ended_fields(experiment)}
    if action == "complete":
        payload = ExperimentCompleted(**fields)
    elif action == "fail":
        payload = ExperimentFailed(**fields, error=experiment.error_message)
    else:
        payload = ExperimentCancelled(**fields, reason=experiment.error_message)
    await publish(session, experiment, payload)
    log.info(
        "experiments.experiment.finished",
        experiment_id=str(experiment.id),
        status=experiment.status,
    )
    return experiment


def is_finished(experiment: Experiment) -> bool:
    return experiment.status in TERMINAL
