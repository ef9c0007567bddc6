"""Metrics of MLflow runs: every value in MLflow's metric log (``metric_log``: several per step,
any step, NaN and infinities, with their timestamps), and Runyard's view of them on the training
runs: step = epoch, one finite value per (metric, epoch).

The epoch view builds on ``tracking.service.runs.log_runs`` (history summary, best epoch, latest
metrics, ``experiment.epochs_logged``, a pending run starts): the epochs the request touches are
read under the experiment's row lock and merged with the new values, so metrics logged at one
step by separate calls all stay. Values the view cannot hold (a negative step or one past
Runyard's last epoch, NaN or an infinity, a name longer than the history summary's 100
characters) are in the metric log only.

MLflow's reads (history, sampling, each run's latest values) come from the metric log; a run
whose metrics came through Runyard's own API has no log rows, and its reads come from its
training runs (one value per epoch, the epoch row's last change as the timestamp).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ARRAY, Integer, and_, any_, bindparam, exists, select
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.ext.asyncio import AsyncSession

from runyard.experiments.mlflow import metric_log
from runyard.experiments.mlflow.convert import LatestMetric, millis
from runyard.experiments.models import Experiment, HistoryBlock, MlflowLatestMetric, TrainingRun
from runyard.experiments.schemas import MAX_EPOCH
from runyard.experiments.tracking.repository.history import LEVELS
from runyard.experiments.tracking.repository.runs import FLOAT_COLUMNS, RUN_COLUMNS
from runyard.experiments.tracking.schemas import RunIn
from runyard.experiments.tracking.service.runs import log_runs
from runyard.shared.identity import Principal
from runyard.shared.pagination import decode_cursor, encode_cursor

HISTORY_CURSOR = "mlflow-metric-history"
#: the longest metric name the history summary (``history_blocks.metric``) holds
MAX_HISTORY_METRIC = 100


@dataclass(frozen=True)
class Point:
    key: str
    value: float
    timestamp: int
    step: int


def pick(points: Sequence[Point]) -> dict[tuple[str, int], Point]:
    """One value per (metric, step): the one with the latest timestamp (on a tie, the later in
    the request), as a later call at the same step would replace it."""
    chosen: dict[tuple[str, int], Point] = {}
    for point in points:
        current = chosen.get((point.key, point.step))
        if current is None or point.timestamp >= current.timestamp:
            chosen[(point.key, point.step)] = point
    return chosen


def _stored_values(run: TrainingRun | None, epoch: int) -> dict[str, Any]:
    values: dict[str, Any] = {"epoch": epoch, "checkpoint_path": None, "metrics": {}}
    for name in FLOAT_COLUMNS:
        values[name] = None
    if run is not None:
        for name in FLOAT_COLUMNS:
            values[name] = getattr(run, name)
        values["checkpoint_path"] = run.checkpoint_path
        values["metrics"] = dict(run.metrics)
    return values


async def write_points(
    session: AsyncSession, principal: Principal, run: Experiment, points: Sequence[Point]
) -> None:
    """Points validated before; ``run`` is row-locked by the caller in this transaction."""
    experiment_id = run.id
    if not points:
        return
    logged = [metric_log.Logged(p.key, p.value, p.timestamp, p.step) for p in points]
    chosen = pick([p for p in points if in_epoch_view(p)])
    if not chosen:
        await metric_log.record(session, experiment_id, logged)
        return
    epochs = sorted({step for _key, step in chosen})
    parameters = metric_log.record_parameters(experiment_id, logged)
    parameters["stored_epochs"] = epochs
    stored = {run.epoch: run for run in await session.scalars(_RECORD_AND_READ, parameters)}
    rows = {epoch: _stored_values(stored.get(epoch), epoch) for epoch in epochs}
    for (key, step), point in chosen.items():
        if key in RUN_COLUMNS:
            rows[step][key] = point.value
        else:
            rows[step]["metrics"][key] = point.value
    # validated already; RunIn's own checks (200 metric names per epoch, a non-negative
    # learning rate) are Runyard API rules an MLflow client does not know
    runs = [RunIn.model_construct(**rows[epoch]) for epoch in epochs]
    await log_runs(session, principal=principal, experiment_id=experiment_id, runs=runs, locked=run)


#: The epochs' stored rows (parameters ``p_experiment_id``, ``stored_epochs``), read in the
#: metric log's writing statement (one round trip). Built once: SQLAlchemy computes a
#: statement's cache key once per statement object, and for this one (two CTEs) that walk cost
#: more per request than the rest of its Python side.
_RECORD_AND_READ = metric_log.with_record(
    select(TrainingRun)
    .where(
        TrainingRun.experiment_id == bindparam("p_experiment_id"),
        TrainingRun.epoch == any_(bindparam("stored_epochs", type_=ARRAY(Integer))),
    )
    .execution_options(populate_existing=True)
)


def in_epoch_view(point: Point) -> bool:
    """Whether Runyard's training runs can hold the value (see the module's docstring)."""
    return (
        0 <= point.step <= MAX_EPOCH
        and math.isfinite(point.value)
        and len(point.key) <= MAX_HISTORY_METRIC
    )


async def latest_metrics(
    session: AsyncSession, experiment_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[LatestMetric]]:
    """Each run's latest value of each metric (MLflow's: greatest step, then timestamp, then
    value): from the metric log, and for the metrics a run has only in its epochs (logged
    through Runyard's API), from the history summary."""
    logged = await metric_log.latest(session, experiment_ids)
    found = await _epoch_latest(session, experiment_ids)
    for experiment_id, metrics in logged.items():
        found[experiment_id] = sorted(metrics + found.get(experiment_id, []), key=lambda m: m.key)
    return found


#: each run's metrics at their highest epoch that MLflow's log does not have (logged through
#: Runyard's API), from the coarsest level of the history summary (one row per metric and
#: 4,096 epochs), not from the runs; parameter ``ids`` (built once: see ``write_points``)
_EPOCH_LATEST = (
    select(
        HistoryBlock.experiment_id,
        HistoryBlock.metric,
        HistoryBlock.last_epoch,
        HistoryBlock.last_value,
        TrainingRun.updated_at,
    )
    .outerjoin(
        TrainingRun,
        and_(
            TrainingRun.experiment_id == HistoryBlock.experiment_id,
            TrainingRun.epoch == HistoryBlock.last_epoch,
        ),
    )
    .where(
        HistoryBlock.experiment_id == any_(metric_log.ids_parameter()),
        HistoryBlock.level == LEVELS - 1,
        HistoryBlock.metric != "",
        HistoryBlock.last_value.is_not(None),
        # the metrics MLflow logged are read from its log: not fetched twice
        ~exists().where(
            MlflowLatestMetric.experiment_id == HistoryBlock.experiment_id,
            MlflowLatestMetric.key == HistoryBlock.metric,
        ),
    )
    .ext(distinct_on(HistoryBlock.experiment_id, HistoryBlock.metric))
    .order_by(HistoryBlock.experiment_id, HistoryBlock.metric, HistoryBlock.block.desc())
)


async def _epoch_latest(
    session: AsyncSession, experiment_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[LatestMetric]]:
    """``_EPOCH_LATEST`` of these runs."""
    if not experiment_ids:
        return {}
    found: dict[uuid.UUID, list[LatestMetric]] = {i: [] for i in experiment_ids}
    # through the connection, as Core: no ORM loading per row (a page has thousands)
    connection = await session.connection()
    rows = await connection.execute(_EPOCH_LATEST, {"ids": list(experiment_ids)})
    for experiment_id, key, step, value, updated_at in rows:
        if value is not None:
            found[experiment_id].append(LatestMetric(key, value, millis(updated_at) or 0, step))
    return found


async def history(
    session: AsyncSession,
    experiment_id: uuid.UUID,
    key: str,
    *,
    max_results: int | None,
    page_token: str | None,
) -> tuple[list[LatestMetric], str | None]:
    """Every value of the metric, by (timestamp, step, value) as MLflow orders them; paged by
    offset (MLflow's page token) when ``max_results`` is given."""
    offset = 0
    if page_token:
        after = decode_cursor(page_token, HISTORY_CURSOR, int)
        offset = after[0] if after else 0
    limit = None if max_results is None else max_results + 1
    found = await metric_log.history(session, experiment_id, key, limit=limit, offset=offset)
    token = None
    if max_results is not None and len(found) > max_results:
        found = found[:max_results]
        token = encode_cursor(HISTORY_CURSOR, [offset + max_results])
    return [LatestMetric(m.key, m.value, m.timestamp, m.step) for m in found], token


async def sampled_history(
    session: AsyncSession,
    experiment_id: uuid.UUID,
    key: str,
    *,
    max_results: int,
    start_step: int | None,
    end_step: int | None,
) -> list[LatestMetric]:
    """MLflow's sampling (``SqlAlchemyStore.get_metric_history_bulk_interval``): the first
    value of each of ``max_results`` NTILE buckets over the ordered values, and the last value
    always (it replaces the last sample when the page is full)."""
    found = await metric_log.sampled(
        session,
        experiment_id,
        key,
        max_results=max_results,
        start_step=start_step,
        end_step=end_step,
    )
    return [LatestMetric(m.key, m.value, m.timestamp, m.step) for m in found]
