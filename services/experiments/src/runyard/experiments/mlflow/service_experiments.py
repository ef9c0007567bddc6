"""MLflow experiments on Runyard projects (``projects.service``, so ``project.*`` events follow).
Deleting an experiment soft-deletes its runs, restoring it restores them (``soft_delete``).

Experiment ``"0"`` (Default) is virtual: the caller's experiments without a project. It is
always active and has no tags; it cannot be renamed, deleted or tagged, and its name is
reserved (no project named "Default" can be created through MLflow; get-by-name "Default"
answers experiment "0").
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from runyard.experiments.mlflow import convert, ids, soft_delete, validation
from runyard.experiments.mlflow.errors import MlflowError, already_exists, invalid, not_found
from runyard.experiments.models import Project
from runyard.experiments.projects import repository as projects_repository
from runyard.experiments.projects import service as projects
from runyard.experiments.projects.schemas import ProjectCreate, ProjectUpdate
from runyard.shared.http import ProblemError
from runyard.shared.identity import Principal

#: MLflow's default and largest page of experiments
DEFAULT_MAX_RESULTS = 1000
MAX_RESULTS = 50000
VIEW_TYPES = {"1": "ACTIVE_ONLY", "2": "DELETED_ONLY", "3": "ALL"}


def view_type(value: str | int | None) -> str:
    """MLflow's ``ViewType`` by name or by its proto number; ACTIVE_ONLY when absent."""
    if value is None or value == "":
        return "ACTIVE_ONLY"
    name = VIEW_TYPES.get(str(value), str(value).upper())
    if name not in VIEW_TYPES.values():
        raise invalid(f"Invalid view_type {value!r}: ACTIVE_ONLY, DELETED_ONLY or ALL")
    return name


async def project_of(
    session: AsyncSession, principal: Principal, experiment_id: str | None, *, write: bool = False
) -> Project:
    """The project behind a (non-Default) experiment id; 404 in MLflow's words."""
    project_id = ids.parse_experiment_id(experiment_id)
    if project_id is None:
        raise invalid("The Default experiment '0' cannot be changed.")
    try:
        return await projects.get_project(
            session, principal=principal, project_id=project_id, write=write
        )
    except ProblemError as exc:
        if exc.status == 404:
            raise not_found(f"No Experiment with id={experiment_id} exists") from None
        raise


async def get_experiment(
    session: AsyncSession, principal: Principal, experiment_id: str | None
) -> dict[str, Any]:
    if ids.parse_experiment_id(experiment_id) is None:
        return convert.default_experiment_json()
    return convert.experiment_json(await project_of(session, principal, experiment_id))


async def get_experiment_by_name(
    session: AsyncSession, principal: Principal, name: str | None
) -> dict[str, Any]:
    if not name:
        raise invalid("Missing value for required parameter 'experiment_name'.")
    if name == ids.DEFAULT_EXPERIMENT_NAME:
        return convert.default_experiment_json()
    project = await projects_repository.by_name(session, principal.user_id, name)
    if project is None:
        raise not_found(f"Could not find experiment with name '{name}'")
    return convert.experiment_json(project)


def _project_input(model: type[Any], **data: Any) -> Any:
    try:
        return model(**data)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise invalid(str(exc)) from None


async def create_experiment(
    session: AsyncSession,
    principal: Principal,
    name: str | None,
    artifact_location: str | None,
    tags: dict[str, str],
) -> str:
    name = validation.experiment_name(name)
    if artifact_location:
        raise invalid(
            "artifact_location is chosen by the server: Runyard stores the artifacts of "
            "experiment <id> under mlflow-artifacts:/<id>"
        )
    validation.experiment_tags(tags)
    if name == ids.DEFAULT_EXPERIMENT_NAME:
        raise already_exists(f"Experiment(name={name}) already exists.")
    if await projects_repository.by_name(session, principal.user_id, name) is not None:
        raise already_exists(f"Experiment(name={name}) already exists.")
    data = _project_input(ProjectCreate, name=name, tags=tags)
    try:
        project = await projects.create_project(session, principal=principal, data=data)
    except ProblemError as exc:
        if exc.status == 409:
            raise already_exists(f"Experiment(name={name}) already exists.") from None
        raise
    return str(project.id)


async def rename_experiment(
    session: AsyncSession, principal: Principal, experiment_id: str | None, new_name: str | None
) -> None:
    name = validation.experiment_name(new_name)
    project = await project_of(session, principal, experiment_id, write=True)
    if project.lifecycle_stage != "active":
        raise MlflowError("Cannot rename a non-active experiment.", "INVALID_STATE")
    if name == project.name:
        return
    if name == ids.DEFAULT_EXPERIMENT_NAME or (
        await projects_repository.by_name(session, project.owner_id, name) is not None
    ):
        raise already_exists(f"Experiment(name={name}) already exists.")
    await projects.update_project(
        session,
        principal=principal,
        project_id=project.id,
        data=_project_input(ProjectUpdate, name=name),
    )


async def delete_experiment(
    session: AsyncSession, principal: Principal, experiment_id: str | None
) -> None:
    """Soft (``project.deleted``), with its runs (as MLflow does); deleting a deleted experiment
    changes nothing."""
    if experiment_id == ids.DEFAULT_EXPERIMENT_ID:
        raise invalid(
            "Cannot delete the default experiment '0'. This is an internally reserved ID."
        )
    project = await project_of(session, principal, experiment_id, write=True)
    if project.lifecycle_stage == "deleted":
        return
    await projects.delete_project(session, principal=principal, project_id=project.id)
    await soft_delete.delete_project_runs(session, project.id)


async def restore_experiment(
    session: AsyncSession, principal: Principal, experiment_id: str | None
) -> None:
    """With every run of it (as MLflow does: runs deleted one by one before too). Restoring an
    active experiment changes nothing."""
    project = await project_of(session, principal, experiment_id, write=True)
    if project.lifecycle_stage == "active":
        return
    await projects.restore_project(session, principal=principal, project_id=project.id)
    await soft_delete.restore_project_runs(session, project.id)


async def _set_tags(
    session: AsyncSession, principal: Principal, project: Project, tags: dict[str, str]
) -> None:
    if project.lifecycle_stage != "active":
        raise invalid(
            f"The experiment {project.id} must be in the 'active' state. Current state is "
            f"{project.lifecycle_stage}."
        )
    validation.experiment_tags(tags)
    await projects.update_project(
        session,
        principal=principal,
        project_id=project.id,
        data=_project_input(ProjectUpdate, tags=tags),
    )


async def set_experiment_tag(
    session: AsyncSession,
    principal: Principal,
    experiment_id: str | None,
    key: str | None,
    value: str | None,
) -> None:
    validation.experiment_tag(key, value)
    assert key is not None
    project = await project_of(session, principal, experiment_id, write=True)
    await _set_tags(session, principal, project, {**project.tags, key: value or ""})


async def delete_experiment_tag(
    session: AsyncSession, principal: Principal, experiment_id: str | None, key: str | None
) -> None:
    project = await project_of(session, principal, experiment_id, write=True)
    if not key or key not in project.tags:
        raise not_found(f"No tag with name: {key} in experiment with id {experiment_id}")
    await _set_tags(
        session, principal, project, {k: v for k, v in project.tags.items() if k != key}
    )


async def search_experiments(
    session: AsyncSession,
    principal: Principal,
    *,
    filter: str | None,
    view: str,
    max_results: int | None,
    order_by: list[str],
    page_token: str | None,
) -> tuple[list[dict[str, Any]], str | None]:
    """The caller's experiments, the Default one among them where its attributes put it."""
    from runyard.experiments.mlflow.search import search_projects

    limit = DEFAULT_MAX_RESULTS if max_results is None else max_results
    if not 1 <= limit <= MAX_RESULTS:
        raise invalid(
            f"Invalid value {limit} for parameter 'max_results' supplied. It must be at most "
            f"{MAX_RESULTS}, and a positive integer."
        )
    rows, token = await search_projects(
        session,
        principal=principal,
        filter=filter or None,
        view_type=view,
        max_results=limit,
        order_by=order_by,
        page_token=page_token,
    )
    found = [
        convert.default_experiment_json() if p is None else convert.experiment_json(p) for p in rows
    ]
    return found, token


def project_ids(experiment_ids: list[str]) -> list[uuid.UUID | None]:
    """Search-runs' experiment ids: ``"0"`` -> None; a malformed id is refused."""
    found: list[uuid.UUID | None] = []
    for value in experiment_ids:
        if value == ids.DEFAULT_EXPERIMENT_ID:
            found.append(None)
            continue
        try:
            found.append(uuid.UUID(value))
        except ValueError:
            raise invalid(f"Invalid experiment ID: '{value}'") from None
    return found
