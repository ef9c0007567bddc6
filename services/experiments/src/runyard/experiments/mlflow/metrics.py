"""Metrics of MLflow runs on Runyard's training runs: step = epoch, one value per (metric,
step), ``training_runs.metric_times`` keeps each value's MLflow timestamp.

Logging builds on ``tracking.service.runs.log_runs`` (history summary, best epoch, latest
metrics, ``experiment.epochs_logged``, a pending run starts): the epochs the request touches are
read under the experiment's row lock and merged with the new values, so metrics logged at one
step by separate calls all stay.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Integer, Text, and_, bindparam, cast, func, select, update
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, distinct_on
from sqlalchemy.ext.asyncio import AsyncSession

from runyard.experiments.mlflow.convert import LatestMetric, millis
from runyard.experiments.models import HistoryBlock, TrainingRun
from runyard.experiments.tracking.repository.history import LEVELS
from runyard.experiments.tracking.repository.runs import (
    FLOAT_COLUMNS,
    RUN_COLUMNS,
    cast_table,
    run_metric,
)
from runyard.experiments.tracking.schemas import RunIn
from runyard.experiments.tracking.service.runs import log_runs
from runyard.shared.identity import Principal
from runyard.shared.pagination import decode_cursor, encode_cursor

HISTORY_CURSOR = "mlflow-metric-history"


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
    session: AsyncSession, principal: Principal, experiment_id: uuid.UUID, points: Sequence[Point]
) -> None:
    """Points validated before (names, finite values, steps in Runyard's range); the caller
    holds the experiment's row lock."""
    if not points:
        return
    chosen = pick(points)
    epochs = sorted({step for _key, step in chosen})
    stored = {
        run.epoch: run
        for run in await session.scalars(
            select(TrainingRun)
            .where(TrainingRun.experiment_id == experiment_id, TrainingRun.epoch.in_(epochs))
            .execution_options(populate_existing=True)
        )
    }
    rows = {epoch: _stored_values(stored.get(epoch), epoch) for epoch in epochs}
    times: dict[int, dict[str, int]] = {epoch: {} for epoch in epochs}
    for (key, step), point in chosen.items():
        if key in RUN_COLUMNS:
            rows[step][key] = point.value
        else:
            rows[step]["metrics"][key] = point.value
        times[step][key] = point.timestamp
    # validated already; RunIn's own checks (200 metric names per epoch, a non-negative
    # learning rate) are Runyard API rules an MLflow client does not know
    runs = [RunIn.model_construct(**rows[epoch]) for epoch in epochs]
    await log_runs(session, principal=principal, experiment_id=experiment_id, runs=runs)
    table = cast_table(TrainingRun.__table__)
    source = select(
        func.unnest(bindparam("p_epochs", type_=ARRAY(Integer))).label("epoch"),
        cast(func.unnest(bindparam("p_times", type_=ARRAY(Text))), JSONB).label("times"),
    ).subquery()
    await session.execute(
        update(table)
        .where(table.c.experiment_id == experiment_id, table.c.epoch == source.c.epoch)
        .values(metric_times=table.c.metric_times.op("||")(source.c.times)),
        {"p_epochs": epochs, "p_times": [json.dumps(times[e]) for e in epochs]},
    )


async def latest_metrics(
    session: AsyncSession, experiment_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[LatestMetric]]:
    """Each run's metrics at their highest step (MLflow's "latest"), from the coarsest level of
    the history summary (one row per metric and 4,096 epochs), not from the runs."""
    if not experiment_ids:
        return {}
    block = HistoryBlock
    query = (
        select(
            block.experiment_id,
            block.metric,
            block.last_epoch,
            block.last_value,
            TrainingRun.metric_times[block.metric].astext,
            TrainingRun.updated_at,
        )
        .outerjoin(
            TrainingRun,
            and_(
                TrainingRun.experiment_id == block.experiment_id,
                TrainingRun.epoch == block.last_epoch,
            ),
        )
        .where(
            block.experiment_id.in_(list(experiment_ids)),
            block.level == LEVELS - 1,
            block.metric != "",
            block.last_value.is_not(None),
        )
        .ext(distinct_on(block.experiment_id, block.metric))
        .order_by(block.experiment_id, block.metric, block.block.desc())
    )
    found: dict[uuid.UUID, list[LatestMetric]] = {i: [] for i in experiment_ids}
    for experiment_id, key, step, value, logged, updated_at in await session.execute(query):
        timestamp = int(logged) if logged is not None else (millis(updated_at) or 0)
        found[experiment_id].append(LatestMetric(key, value, timestamp, step))
    return found


async def history(
    session: AsyncSession,
    experiment_id: uuid.UUID,
    key: str,
    *,
    max_results: int | None,
    page_token: str | None,
) -> tuple[list[LatestMetric], str | None]:
    """The metric's values by step (one per step); pages keyed on the step."""
    value = run_metric(key)
    query = select(
        TrainingRun.epoch,
        value,
        TrainingRun.metric_times[key].astext,
        TrainingRun.updated_at,
    ).where(TrainingRun.experiment_id == experiment_id, value.is_not(None))
    after = decode_cursor(page_token, HISTORY_CURSOR, int) if page_token else None
    if after is not None:
        query = query.where(TrainingRun.epoch > after[0])
    query = query.order_by(TrainingRun.epoch)
    if max_results is not None:
        query = query.limit(max_results + 1)
    rows = list(await session.execute(query))
    token = None
    if max_results is not None and len(rows) > max_results:
        rows = rows[:max_results]
        token = encode_cursor(HISTORY_CURSOR, [rows[-1][0]])
    return [_point(key, row) for row in rows], token


def _point(key: str, row: Any) -> LatestMetric:
    epoch, value, logged, updated_at = row
    timestamp = int(logged) if logged is not None else (millis(updated_at) or 0)
    return LatestMetric(key, value, timestamp, epoch)


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
    value = run_metric(key)
    conditions = [TrainingRun.experiment_id == experiment_id, value.is_not(None)]
    if start_step is not None and end_step is not None:
        conditions += [TrainingRun.epoch >= start_step, TrainingRun.epoch <= end_step]
    columns = (
        TrainingRun.epoch.label("epoch"),
        value.label("value"),
        TrainingRun.metric_times[key].astext.label("logged"),
        TrainingRun.updated_at.label("updated_at"),
    )
    bucketed = select(
        *columns, func.ntile(max_results).over(order_by=TrainingRun.epoch).label("bucket")
    ).where(*conditions)
    inner = bucketed.subquery()
    ranked = select(
        inner.c.epoch,
        inner.c.value,
        inner.c.logged,
        inner.c.updated_at,
        func.row_number().over(partition_by=inner.c.bucket, order_by=inner.c.epoch).label("rn"),
    ).subquery()
    rows = list(
        await session.execute(
            select(ranked.c.epoch, ranked.c.value, ranked.c.logged, ranked.c.updated_at)
            .where(ranked.c.rn == 1)
            .order_by(ranked.c.epoch)
        )
    )
    last = (
        await session.execute(
            select(*columns).where(*conditions).order_by(TrainingRun.epoch.desc()).limit(1)
        )
    ).first()
    if last is not None and (not rows or rows[-1][0] != last[0]):
        if len(rows) >= max_results:
            rows[-1] = last
        else:
            rows.append(last)
    return [_point(key, row) for row in rows]
