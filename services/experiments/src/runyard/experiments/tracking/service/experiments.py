"""Experiment use cases: read, create, update, delete, and tag or untag one."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from runyard.experiments import errors, users
from runyard.experiments.datasets import repository as datasets
from runyard.experiments.datasets.service import usable_dataset
from runyard.experiments.models import Experiment
from runyard.experiments.projects.service import resolve_project
from runyard.experiments.repository import get_owned, unique_or_conflict
from runyard.experiments.schemas import changed_fields, requested_changes
from runyard.experiments.tracking.repository import experiments as repository
from runyard.experiments.tracking.schemas import ExperimentCreate, ExperimentUpdate
from runyard.experiments.tracking.service import epoch_events, tags
from runyard.experiments.tracking.service.bookkeeping import recompute_best
from runyard.shared.contracts.experiments import (
    ExperimentCreated,
    ExperimentDeleted,
    ExperimentUpdated,
)
from runyard.shared.db import new_id
from runyard.shared.http import ProblemError
from runyard.shared.identity import Principal, require_writer
from runyard.shared.logging import get_logger
from runyard.shared.outbox import emit

log = get_logger(__name__)

#: metrics where a higher value is better; any other best_metric defaults to "min"
HIGHER_IS_BETTER = ("acc", "f1", "auc", "precision", "recall", "score", "iou", "map")
NOT_NULLABLE = {"name", "config", "hyperparameters", "best_metric", "best_mode"}


def default_best_mode(metric: str) -> str:
    lowered = metric.lower()
    return "max" if any(word in lowered for word in HIGHER_IS_BETTER) else "min"


async def summary(session: AsyncSession, experiment: Experiment) -> dict[str, Any]:
    """The fields every experiment event carries, owner and dataset names included."""
    return {
        "experiment_id": experiment.id,
        "name": experiment.name,
        "owner_id": experiment.owner_id,
        "model_type": experiment.model_type,
        "dataset_id": experiment.dataset_id,
        "status": experiment.status,
        **await users.owner_fields(session, experiment.owner_id),
        "dataset_name": await datasets.dataset_name(session, experiment.dataset_id),
        "project_id": experiment.project_id,
    }


async def get_visible_experiment(
    session: AsyncSession, *, principal: Principal, experiment_id: uuid.UUID
) -> Experiment:
    return await get_owned(
        session, Experiment, experiment_id, principal=principal, what="experiment"
    )


async def get_writable_experiment(
    session: AsyncSession, *, principal: Principal, experiment_id: uuid.UUID
) -> Experiment:
    """The experiment, row-locked until the transaction ends; 403 for viewers, 404 if not theirs."""
    return await get_owned(
        session, Experiment, experiment_id, principal=principal, what="experiment", write=True
    )


def name_taken(name: str) -> dict[str, ProblemError]:
    return {"uq_experiments_owner_id_name": errors.NameTaken("an experiment", name)}


async def create_experiment(
    session: AsyncSession, *, principal: Principal, data: ExperimentCreate
) -> Experiment:
    require_writer(principal)
    if data.dataset_id is not None:
        await usable_dataset(session, principal, principal.user_id, data.dataset_id)
    project_id = None
    if data.project is not None:
        project_id = await resolve_project(session, principal, principal.user_id, data.project)
    values = data.model_dump(exclude={"tags", "best_mode", "project"})
    experiment = Experiment(
        id=new_id(),
        project_id=project_id,
        owner_id=principal.user_id,
        status="pending",
        metrics={},
        total_epochs=0,
        version=1,
        tags=[],
        best_mode=data.best_mode or default_best_mode(data.best_metric),
        **values,
    )
    async with unique_or_conflict(session, name_taken(data.name)):
        session.add(experiment)
    for tag in data.tags:
        await tags.attach(session, principal=principal, experiment=experiment, tag=tag)
    await emit(
        session,
        ExperimentCreated(**await summary(session, experiment)),
        subject=experiment.id,
        sequence=experiment.version,
    )
    log.info("experiments.experiment.created", experiment_id=str(experiment.id))
    return experiment


async def update_experiment(
    session: AsyncSession, *, principal: Principal, experiment_id: uuid.UUID, data: ExperimentUpdate
) -> Experiment:
    """Writes (and announces) only what changed."""
    experiment = await get_writable_experiment(
        session, principal=principal, experiment_id=experiment_id
    )
    # the summaries as of now (a new best metric is computed over every epoch logged)
    await epoch_events.fold(session, experiment)
    changes = requested_changes(data, not_nullable=NOT_NULLABLE)
    if changes.get("dataset_id") is not None:
        await usable_dataset(session, principal, experiment.owner_id, changes["dataset_id"])
    if "project" in changes:
        reference = changes.pop("project")
        changes["project_id"] = (
            None
            if reference is None
            else await resolve_project(session, principal, experiment.owner_id, reference)
        )
    if "best_metric" in changes and "best_mode" not in changes:
        changes["best_mode"] = default_best_mode(changes["best_metric"])
    changed = changed_fields(experiment, changes)
    if not changed:
        return experiment
    async with unique_or_conflict(session, name_taken(changes.get("name", ""))):
        for key in changed:
            setattr(experiment, key, changes[key])
        if {"best_metric", "best_mode"} & set(changed):
            await recompute_best(session, experiment)
        experiment.version += 1
    await emit(
        session,
        ExperimentUpdated(**await summary(session, experiment), changed=changed),
        subject=experiment.id,
        sequence=experiment.version,
    )
    return experiment


async def delete_experiment(
    session: AsyncSession, *, principal: Principal, experiment_id: uuid.UUID
) -> None:
    """Delete the experiment with its runs and tag links; tag usage counts go down with them."""
    experiment = await get_writable_experiment(
        session, principal=principal, experiment_id=experiment_id
    )
    # its last epochs' event first: the pending row goes with the experiment
    await epoch_events.write_pending(session, experiment)
    fields = await summary(session, experiment)
    experiment.version += 1
    await emit(
        session, ExperimentDeleted(**fields), subject=experiment.id, sequence=experiment.version
    )
    await repository.delete_experiment(session, experiment)
    log.info("experiments.experiment.deleted", experiment_id=str(experiment_id))


async def tag_experiment(
    session: AsyncSession, *, principal: Principal, experiment_id: uuid.UUID, tag: str
) -> Experiment:
    """Tag the experiment (idempotent); a tag the owner does not have yet is created."""
    experiment = await get_writable_experiment(
        session, principal=principal, experiment_id=experiment_id
    )
    await tags.attach(session, principal=principal, experiment=experiment, tag=tag)
    return experiment


async def untag_experiment(
    session: AsyncSession, *, principal: Principal, experiment_id: uuid.UUID, tag: str
) -> None:
    """Take the tag off the experiment (idempotent)."""
    experiment = await get_writable_experiment(
        session, principal=principal, experiment_id=experiment_id
    )
    await tags.detach(session, experiment=experiment, tag=tag)
