"""MLflow runs on Runyard experiments.

A run is created running (Runyard create + start: ``experiment.created``,
``experiment.started``); update-run's FINISHED/FAILED/KILLED go through the lifecycle
(``experiment.completed``/``failed``/``cancelled``). An ended run cannot run again
(INVALID_STATE), nor take metrics (Runyard: a finished experiment takes no epochs); it still
takes params and tags. Delete is soft (``deleted_at``; ``experiment.deleted``), restore undoes
it (``experiment.restored``). Params are write-once. Params, tags and inputs that change
publish ``experiment.updated``.
"""

from __future__ import annotations

import json
import math
import secrets
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import any_, exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from runyard.experiments.mlflow import (
    convert,
    ids,
    logged_models,
    metric_log,
    soft_delete,
    sql_log,
    validation,
)
from runyard.experiments.mlflow import metrics as metric_store
from runyard.experiments.mlflow.convert import RUN_NAME_TAG, LatestMetric, param_text
from runyard.experiments.mlflow.errors import MlflowError, invalid, not_found
from runyard.experiments.mlflow.schemas import (
    DatasetInput,
    KeyValue,
    MetricIn,
    ModelInput,
    ModelOutput,
)
from runyard.experiments.mlflow.service_experiments import project_of
from runyard.experiments.models import TERMINAL, Experiment, User
from runyard.experiments.repository import unique_or_conflict
from runyard.experiments.tracking.schemas import (
    ExperimentCancel,
    ExperimentComplete,
    ExperimentFail,
)
from runyard.experiments.tracking.service import experiments as tracking
from runyard.experiments.tracking.service import lifecycle
from runyard.shared.contracts.experiments import ExperimentCreated, ExperimentUpdated
from runyard.shared.db import new_id
from runyard.shared.http import ProblemError
from runyard.shared.identity import Principal, require_writer
from runyard.shared.outbox import emit
from runyard.shared.runtime import AnyRuntime

#: the metric that picks a run's best epoch (Runyard's default)
DEFAULT_BEST_METRIC = "val_loss"
RUN_STATUSES = ("RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED")
_ADJECTIVES = ("bold", "calm", "eager", "keen", "brave", "swift", "quiet", "bright", "merry")
_NOUNS = ("fox", "owl", "lynx", "heron", "otter", "wren", "yak", "koi", "moth", "seal")


def random_run_name() -> str:
    """MLflow names unnamed runs like this ("bold-fox-123")."""
    return f"{secrets.choice(_ADJECTIVES)}-{secrets.choice(_NOUNS)}-{secrets.randbelow(1000)}"


def _from_millis(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, tz=UTC)


async def _name_taken(
    session: AsyncSession, owner_id: uuid.UUID, name: str, but: uuid.UUID
) -> bool:
    query = exists().where(
        Experiment.owner_id == owner_id, Experiment.name == name, Experiment.id != but
    )
    return bool(await session.scalar(select(query)))


async def runyard_name(
    session: AsyncSession,
    owner_id: uuid.UUID,
    run_name: str,
    run_id: uuid.UUID,
) -> str:
    """Runyard names are unique per owner, MLflow run names are not: a name the owner's other
    experiment has gets the run id's first 8 hex digits as a suffix."""
    base = run_name.strip()[:240] or "run"
    if not await _name_taken(session, owner_id, base, but=run_id):
        return base
    return f"{base}-{run_id.hex[:8]}"


# --- reading ---------------------------------------------------------------------------------


async def visible_run(
    session: AsyncSession, principal: Principal, run_id: str | None
) -> Experiment:
    """A run the caller may read (deleted ones too); 404 in MLflow's words."""
    experiment_id = ids.parse_run_id(run_id)
    try:
        return await tracking.get_visible_experiment(
            session, principal=principal, experiment_id=experiment_id
        )
    except ProblemError as exc:
        if exc.status == 404:
            raise not_found(f"Run with id={run_id} not found") from None
        raise


async def writable_run(
    session: AsyncSession, principal: Principal, run_id: str | None, *, active: bool = True
) -> Experiment:
    """The run, row-locked; ``active``: refused (as MLflow does) when it is deleted."""
    experiment_id = ids.parse_run_id(run_id)
    try:
        run = await tracking.get_writable_experiment(
            session, principal=principal, experiment_id=experiment_id
        )
    except ProblemError as exc:
        if exc.status == 404:
            raise not_found(f"Run with id={run_id} not found") from None
        raise
    if active and run.deleted_at is not None:
        raise invalid(
            f"The run {run.id.hex} must be in the 'active' state. Current state is deleted."
        )
    return run


#: the usernames of the users ``ids`` (built once: see ``metrics.write_points``)
_USERNAMES = select(User.user_id, User.username).where(
    User.user_id == any_(metric_log.ids_parameter())
)


async def usernames(session: AsyncSession, owner_ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
    if not owner_ids:
        return {}
    rows = await session.execute(_USERNAMES, {"ids": list(owner_ids)})
    return {user_id: username for user_id, username in rows}


async def runs_json(
    session: AsyncSession, runs: Sequence[convert.RunFields]
) -> list[dict[str, Any]]:
    latest = await metric_store.latest_metrics(session, [r.id for r in runs])
    names = await usernames(session, {r.owner_id for r in runs})
    return [
        convert.run_json(r, names.get(r.owner_id), with_final_metrics(r, latest.get(r.id, [])))
        for r in runs
    ]


def with_final_metrics(run: convert.RunFields, latest: list[LatestMetric]) -> list[LatestMetric]:
    """The latest metrics of the epochs, and the run's own metrics that no epoch has (final
    metrics a Runyard client gave at completion: step 0, the time the run ended)."""
    logged = {m.key for m in latest}
    when = convert.millis(run.ended_at or run.updated_at) or 0
    extra = [
        LatestMetric(key, float(value), when, 0)
        for key, value in sorted(run.metrics.items())
        if key not in logged
        and isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
    ]
    return [*latest, *extra]


async def run_json(session: AsyncSession, run: Experiment) -> dict[str, Any]:
    return (await runs_json(session, [run]))[0]


async def run_info_json(session: AsyncSession, run: Experiment) -> dict[str, Any]:
    names = await usernames(session, {run.owner_id})
    return convert.run_info_json(run, names.get(run.owner_id))


# --- events ----------------------------------------------------------------------------------


async def announce_update(session: AsyncSession, run: Experiment, changed: list[str]) -> None:
    run.version += 1
    await session.flush()
    await emit(
        session,
        ExperimentUpdated(**await tracking.summary(session, run), changed=sorted(changed)),
        subject=run.id,
        sequence=run.version,
    )


# --- create, update, delete, restore ---------------------------------------------------------


async def create_run(
    session: AsyncSession,
    principal: Principal,
    *,
    experiment_id: str | None,
    start_time: int | None,
    tags: list[KeyValue],
    run_name: str | None,
) -> Experiment:
    """Running at once. The request's ``user_id`` (deprecated in MLflow's API) is not kept: a
    run's user is its ``mlflow.user`` tag, else its owner's username."""
    project_id = ids.parse_experiment_id(experiment_id or ids.DEFAULT_EXPERIMENT_ID)
    if project_id is not None:
        project = await project_of(session, principal, experiment_id)
        if project.lifecycle_stage != "active":
            raise invalid(
                f"The experiment {experiment_id} must be in the 'active' state. Current state "
                f"is {project.lifecycle_stage}."
            )
    for index, pair in enumerate(tags):
        validation.tag(pair.key, pair.value, f"tags[{index}].")
    kv_tags = {p.key or "": p.value or "" for p in tags}
    name_tag = kv_tags.get(RUN_NAME_TAG)
    if run_name and name_tag and run_name != name_tag:
        raise invalid(
            "Both 'run_name' argument and 'mlflow.runName' tag are specified, but with "
            f"different values (run_name='{run_name}', mlflow.runName='{name_tag}')."
        )
    name = run_name or name_tag or random_run_name()
    kv_tags[RUN_NAME_TAG] = name
    if start_time is not None and start_time < 0:
        raise invalid(f"Invalid value {start_time} for parameter 'start_time' supplied")
    require_writer(principal)
    run_uuid = new_id()
    runyard = await runyard_name(session, principal.user_id, name, run_uuid)
    run = Experiment(
        id=run_uuid,
        project_id=project_id,
        owner_id=principal.user_id,
        name=runyard,
        status="pending",
        config={},
        hyperparameters={},
        metrics={},
        total_epochs=0,
        version=1,
        tags=[],
        best_metric=DEFAULT_BEST_METRIC,
        best_mode=tracking.default_best_mode(DEFAULT_BEST_METRIC),
        kv_tags=kv_tags,
        inputs=[],
        outputs=[],
        started_at=None if start_time is None else _from_millis(start_time),
    )
    async with unique_or_conflict(session, tracking.name_taken(runyard)):
        session.add(run)
    await emit(
        session,
        ExperimentCreated(**await tracking.summary(session, run)),
        subject=run.id,
        sequence=run.version,
    )
    await lifecycle.begin(session, run)
    return run


async def update_run(
    session: AsyncSession,
    principal: Principal,
    run_id: str | None,
    *,
    status: str | None,
    end_time: int | None,
    run_name: str | None,
) -> Experiment:
    """Status changes go through the lifecycle. RUNNING on a scheduled run starts it, on a
    paused one resumes it; an ended run asked to run again, or to end otherwise, is
    INVALID_STATE; asking for the status a run has changes nothing."""
    run = await writable_run(session, principal, run_id)
    if status is not None and status not in RUN_STATUSES:
        raise invalid(f"Invalid value {status!r} for parameter 'status' supplied")
    if run_name:
        await _rename(session, run, run_name)
    # paused shows as RUNNING: RUNNING asked of a paused run resumes it
    if status is not None and (status != convert.RUN_STATUS[run.status] or run.status == "paused"):
        run = await _move(session, principal, run, status)
    if end_time is not None and run.status in TERMINAL:
        run.ended_at = _from_millis(end_time)
        if run.started_at is not None:
            run.duration_seconds = max(0.0, (run.ended_at - run.started_at).total_seconds())
        await session.flush()
    return run


async def _move(
    session: AsyncSession, principal: Principal, run: Experiment, status: str
) -> Experiment:
    if run.status in TERMINAL:
        raise MlflowError(
            f"The run {run.id.hex} has ended ({convert.RUN_STATUS[run.status]}); Runyard does "
            f"not move an ended run to {status}.",
            "INVALID_STATE",
        )
    if status == "RUNNING":
        if run.status == "pending":
            await lifecycle.begin(session, run)
            return run
        if run.status == "paused":
            return await lifecycle.resume(session, principal=principal, experiment_id=run.id)
        return run
    if status == "SCHEDULED":
        raise MlflowError(f"The run {run.id.hex} has started already.", "INVALID_STATE")
    if status == "FINISHED":
        return await lifecycle.complete(
            session, principal=principal, experiment_id=run.id, body=ExperimentComplete()
        )
    if status == "FAILED":
        return await lifecycle.fail(
            session, principal=principal, experiment_id=run.id, body=ExperimentFail()
        )
    return await lifecycle.cancel(
        session, principal=principal, experiment_id=run.id, body=ExperimentCancel()
    )


async def _rename(session: AsyncSession, run: Experiment, run_name: str) -> None:
    """The ``mlflow.runName`` tag; the Runyard name stays what the run was created with."""
    validation.tag(RUN_NAME_TAG, run_name)
    if run.kv_tags.get(RUN_NAME_TAG) == run_name:
        return
    run.kv_tags = {**run.kv_tags, RUN_NAME_TAG: run_name}
    await announce_update(session, run, ["kv_tags"])


async def delete_run(session: AsyncSession, principal: Principal, run_id: str | None) -> None:
    """Soft (see ``soft_delete``)."""
    await soft_delete.delete(session, await writable_run(session, principal, run_id, active=False))


async def restore_run(session: AsyncSession, principal: Principal, run_id: str | None) -> None:
    await soft_delete.restore(session, await writable_run(session, principal, run_id, active=False))


# --- logging ---------------------------------------------------------------------------------


def _points(metrics: list[MetricIn], *, batch: bool) -> list[metric_store.Point]:
    points = []
    for index, m in enumerate(metrics):
        path = f"metrics[{index}]." if batch else ""
        value = validation.metric(m.key, m.value, m.timestamp, m.step, path)
        assert m.key is not None and m.timestamp is not None
        points.append(metric_store.Point(m.key, value, m.timestamp, m.step))
    return points


def _check_params(run: Experiment, params: list[KeyValue], *, batch: bool) -> dict[str, str]:
    """The params that are new; a logged param logged again with another value is refused."""
    for index, p in enumerate(params):
        validation.param(p.key, p.value, f"params[{index}]." if batch else "")
    validation.unique_param_keys([p.key or "" for p in params])
    new: dict[str, str] = {}
    for p in params:
        key, value = p.key or "", p.value or ""
        if key in run.hyperparameters:
            old = param_text(run.hyperparameters[key])
            if old != value:
                raise invalid(
                    f"Changing param values is not allowed. Param with key='{key}' was already "
                    f"logged with value='{old}' for run ID='{run.id.hex}'. Attempted logging new "
                    f"value '{value}'."
                )
        else:
            new[key] = value
    return new


def _check_tags(tags: list[KeyValue], *, batch: bool) -> dict[str, str]:
    for index, t in enumerate(tags):
        validation.tag(t.key, t.value, f"tags[{index}]." if batch else "")
    return {t.key or "": t.value or "" for t in tags}


def _check_can_take_metrics(run: Experiment) -> None:
    if run.status in TERMINAL:
        raise MlflowError(
            f"The run {run.id.hex} has ended ({convert.RUN_STATUS[run.status]}): Runyard takes "
            "no more metrics for it.",
            "INVALID_STATE",
        )


async def log_batch(
    session: AsyncSession,
    principal: Principal,
    run_id: str | None,
    *,
    metrics: list[MetricIn],
    params: list[KeyValue],
    tags: list[KeyValue],
    batch: bool = True,
) -> None:
    """Everything is checked before anything is written: a refused batch changes nothing."""
    validation.batch(metrics, params, tags)
    points = _points(metrics, batch=batch)
    run = await writable_run(session, principal, run_id)
    new_params = _check_params(run, params, batch=batch)
    new_tags = _check_tags(tags, batch=batch)
    if points:
        _check_can_take_metrics(run)
        await metric_store.write_points(session, principal, run, points)
        linked = [m.model_dump() for m in metrics if m.model_id]
        if linked:
            await logged_models.record_metrics(session, principal, run, linked)
    await _store_params_and_tags(session, run, new_params, new_tags)


async def log_epochs_in_one_statement(
    runtime: AnyRuntime,
    principal: Principal,
    run_id: str | None,
    *,
    metrics: list[MetricIn],
    params: list[KeyValue],
    tags: list[KeyValue],
    batch: bool = True,
) -> bool:
    """``log_batch`` of a training loop's new metrics to its running run, as one SQL statement
    (``sql_log``). False: not that case, nothing written; ``log_batch`` does it. Bad input is
    refused here as there, before anything is looked up."""
    if not runtime.settings.mlflow_sql_log_path or principal.role not in ("user", "admin"):
        return False
    validation.batch(metrics, params, tags)
    points = _points(metrics, batch=batch)
    if (
        params
        or tags
        or not points
        or any(m.model_id for m in metrics)
        or not all(metric_store.in_epoch_view(p) for p in points)
    ):
        return False
    experiment_id = ids.parse_run_id(run_id)
    owner_id = None if principal.is_admin else principal.user_id
    if not await sql_log.log_epochs(runtime.engine, experiment_id, owner_id, points):
        return False
    runtime.work.notify()
    return True


async def _store_params_and_tags(
    session: AsyncSession, run: Experiment, params: dict[str, str], tags: dict[str, str]
) -> None:
    changed = []
    if params:
        run.hyperparameters = {**run.hyperparameters, **params}
        changed.append("hyperparameters")
    if tags and any(run.kv_tags.get(k) != v for k, v in tags.items()):
        run.kv_tags = {**run.kv_tags, **tags}
        changed.append("kv_tags")
    if changed:
        await announce_update(session, run, changed)


async def delete_tag(
    session: AsyncSession, principal: Principal, run_id: str | None, key: str | None
) -> None:
    run = await writable_run(session, principal, run_id)
    if not key or key not in run.kv_tags:
        raise not_found(f"No tag with name: {key} in run with id {run.id.hex}")
    run.kv_tags = {k: v for k, v in run.kv_tags.items() if k != key}
    await announce_update(session, run, ["kv_tags"])


async def log_inputs(
    session: AsyncSession,
    principal: Principal,
    run_id: str | None,
    *,
    datasets: list[DatasetInput],
    models: list[ModelInput],
) -> None:
    """Datasets are kept once per (name, digest), models once per id (as MLflow does)."""
    validation.batch_limit("datasets", validation.MAX_DATASETS_PER_BATCH, len(datasets))
    entries = [_dataset_entry(d, i) for i, d in enumerate(datasets)]
    for index, model in enumerate(models):
        if not model.model_id:
            raise invalid(f"Missing value for required parameter 'models[{index}].model_id'.")
    run = await writable_run(session, principal, run_id)
    inputs = list(run.inputs)
    seen_datasets = {
        (i["dataset"].get("name"), i["dataset"].get("digest")) for i in inputs if "dataset" in i
    }
    seen_models = {i["model_id"] for i in inputs if "model_id" in i}
    for entry in entries:
        key = (entry["dataset"]["name"], entry["dataset"]["digest"])
        if key not in seen_datasets:
            seen_datasets.add(key)
            inputs.append(entry)
    for model in models:
        if model.model_id not in seen_models:
            seen_models.add(model.model_id or "")
            inputs.append({"model_id": model.model_id})
    if len(inputs) != len(run.inputs):
        run.inputs = inputs
        await announce_update(session, run, ["inputs"])


def _dataset_entry(item: DatasetInput, index: int) -> dict[str, Any]:
    path = f"datasets[{index}]"
    dataset = item.dataset
    if dataset is None or not dataset.name or not dataset.digest:
        raise invalid(f"Missing value for required parameter '{path}.dataset' (name, digest).")
    for what, limit, value in (
        ("name", validation.MAX_DATASET_NAME_SIZE, dataset.name),
        ("digest", validation.MAX_DATASET_DIGEST_SIZE, dataset.digest),
        ("source", validation.MAX_DATASET_SOURCE_SIZE, dataset.source),
        ("schema", validation.MAX_DATASET_SCHEMA_SIZE, dataset.schema_),
        ("profile", validation.MAX_DATASET_PROFILE_SIZE, dataset.profile),
    ):
        validation.length(f"{path}.dataset.{what}", limit, value)
    for tag in item.tags:
        validation.length(f"{path}.tags.key", validation.MAX_INPUT_TAG_KEY_SIZE, tag.key)
        validation.length(f"{path}.tags.value", validation.MAX_INPUT_TAG_VALUE_SIZE, tag.value)
    fields = dataset.model_dump(by_alias=True, exclude_none=True)
    return {
        "dataset": {"source_type": "", "source": "", **fields},
        "tags": [{"key": t.key or "", "value": t.value or ""} for t in item.tags],
    }


async def log_outputs(
    session: AsyncSession, principal: Principal, run_id: str | None, models: list[ModelOutput]
) -> None:
    for index, model in enumerate(models):
        if not model.model_id:
            raise invalid(f"Missing value for required parameter 'models[{index}].model_id'.")
    run = await writable_run(session, principal, run_id)
    outputs = list(run.outputs)
    seen = {(o.get("model_id"), o.get("step")) for o in outputs}
    for model in models:
        if (model.model_id, model.step) not in seen:
            seen.add((model.model_id, model.step))
            outputs.append({"model_id": model.model_id, "step": model.step})
    if len(outputs) != len(run.outputs):
        run.outputs = outputs
        await announce_update(session, run, ["outputs"])


#: MLflow's run tag listing the models logged to the run (``runs/log-model``)
LOGGED_MODELS_TAG = "mlflow.log-model.history"
MODEL_FIELDS = {"artifact_path", "flavors", "utc_time_created", "run_id"}


async def log_model(
    session: AsyncSession, principal: Principal, run_id: str | None, model_json: str | None
) -> None:
    """``mlflow.<flavor>.log_model`` records the model in the run's ``mlflow.log-model.history``
    tag (a JSON list), as MLflow's server does."""
    try:
        model = json.loads(model_json or "")
    except ValueError:
        raise invalid(f"Malformed model info. \n {model_json} \n is not a valid JSON.") from None
    if not isinstance(model, dict):
        raise invalid(f"Malformed model info. \n {model_json} \n is not a JSON object.")
    missing = MODEL_FIELDS - set(model)
    if missing:
        raise invalid(f"Model json is missing mandatory fields: {missing}")
    run = await writable_run(session, principal, run_id)
    try:
        history = json.loads(run.kv_tags.get(LOGGED_MODELS_TAG, "[]"))
    except ValueError:
        history = []
    if not isinstance(history, list):
        history = []
    run.kv_tags = {**run.kv_tags, LOGGED_MODELS_TAG: json.dumps([*history, model])}
    await announce_update(session, run, ["kv_tags"])
