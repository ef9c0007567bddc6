"""MLflow's metric log: every value an MLflow client logs, kept the way MLflow keeps it.

MLflow lets a run log several values of one metric at one step (told apart by their timestamp),
any 64-bit step (negative too) and NaN or infinite values; its history, sampling and "latest
value" answers depend on all of them. Runyard's own model keeps one finite value per metric and
epoch (``training_runs``), which drives curves, best epoch, events and alerts. So an MLflow
metric is written twice in one transaction: here, as logged (``mlflow_metrics``, with
``mlflow_latest_metrics`` keeping the value MLflow reports as the run's), and into the epoch
rows (the last value logged per step, when the step is an epoch and the value finite).

Runs whose metrics came through Runyard's own API have no rows here; their MLflow history is
read from ``training_runs`` instead (``runs_history`` below), one value per epoch.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Float,
    String,
    Uuid,
    any_,
    bindparam,
    func,
    literal_column,
    select,
    tuple_,
)
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncSession

from runyard.experiments.mlflow.convert import LatestMetric
from runyard.experiments.models import MlflowLatestMetric, MlflowMetric, TrainingRun
from runyard.experiments.tracking.repository.runs import cast_table, run_metric

#: MLflow's ``MAX_RESULTS_GET_METRIC_HISTORY``: the most values one history request returns
MAX_HISTORY = 25_000


@dataclass(frozen=True, slots=True)
class Logged:
    """One metric value as an MLflow client logs it."""

    key: str
    value: float
    #: milliseconds since the Unix epoch
    timestamp: int
    step: int

    def order(self) -> tuple[int, int, float]:
        """MLflow's "later than" for the latest value: (step, timestamp, value); NaN counts as
        the smallest value (a real value wins a tie)."""
        return (self.step, self.timestamp, -math.inf if math.isnan(self.value) else self.value)


@dataclass(frozen=True, slots=True)
class Stored(Logged):
    experiment_id: uuid.UUID


def _unnested(prefix: str) -> Any:
    """The values of a batch, one row each: parameters ``{prefix}experiment_id`` (one),
    ``{prefix}key``, ``{prefix}step``, ``{prefix}timestamp``, ``{prefix}value`` (arrays)."""
    return select(
        bindparam(f"{prefix}experiment_id", type_=Uuid).label("experiment_id"),
        func.unnest(bindparam(f"{prefix}key", type_=ARRAY(String))).label("key"),
        func.unnest(bindparam(f"{prefix}step", type_=ARRAY(BigInteger))).label("step"),
        func.unnest(bindparam(f"{prefix}timestamp", type_=ARRAY(BigInteger))).label("timestamp"),
        func.unnest(bindparam(f"{prefix}value", type_=ARRAY(Float))).label("value"),
    )


COLUMNS = ["experiment_id", "key", "step", "timestamp", "value"]


def _insert_statement() -> Any:
    table = cast_table(MlflowMetric.__table__)
    return insert(table).from_select(COLUMNS, _unnested("p_")).on_conflict_do_nothing()


#: SQL's NaN (PostgreSQL: equal to itself, greater than every number)
NAN: ColumnElement[float] = literal_column("'NaN'::float8")


def _latest_statement() -> Any:
    """Each metric's latest of the batch (parameters ``l_*``) into ``mlflow_latest_metrics``
    where it is later than the one there."""
    table = cast_table(MlflowLatestMetric.__table__)
    stmt = insert(table).from_select(COLUMNS, _unnested("l_"))
    excluded = stmt.excluded
    # PostgreSQL orders NaN above every number; MLflow treats it as no better than any: a NaN
    # only replaces a value at a later (step, timestamp)
    return stmt.on_conflict_do_update(
        index_elements=[table.c.experiment_id, table.c.key],
        set_={"step": excluded.step, "timestamp": excluded.timestamp, "value": excluded.value},
        where=(tuple_(excluded.step, excluded.timestamp) > tuple_(table.c.step, table.c.timestamp))
        | (
            (excluded.step == table.c.step)
            & (excluded.timestamp == table.c.timestamp)
            & (excluded.value != NAN)
            & ((table.c.value == NAN) | (excluded.value > table.c.value))
        ),
    )


#: Both tables in one statement (one round trip): the values into the log as a CTE (run
#: whatever the outer statement reads), then the latest values.
RECORD = _latest_statement().add_cte(_insert_statement().cte("logged"))


#: The writes of ``RECORD`` as CTEs to add to a query (built once: statements are costly to make)
RECORD_CTES = (_insert_statement().cte("logged"), _latest_statement().cte("latest"))


def with_record(query: Any) -> Any:
    """``query`` (a SELECT) with the writes of ``record`` as its CTEs: one round trip for both.
    PostgreSQL runs them whatever the query reads, and the query sees the tables as they were
    before them (read another table)."""
    return query.add_cte(*RECORD_CTES)


def record_parameters(experiment_id: uuid.UUID, metrics: Sequence[Logged]) -> dict[str, Any]:
    """The parameters of ``RECORD`` (and ``with_record``) for these values."""
    latest: dict[str, Logged] = {}
    for metric in metrics:
        seen = latest.get(metric.key)
        if seen is None or metric.order() > seen.order():
            latest[metric.key] = metric
    return _columns("p_", experiment_id, metrics) | _columns(
        "l_", experiment_id, list(latest.values())
    )


def _columns(prefix: str, experiment_id: uuid.UUID, metrics: Sequence[Logged]) -> dict[str, Any]:
    return {
        f"{prefix}experiment_id": experiment_id,
        f"{prefix}key": [m.key for m in metrics],
        f"{prefix}step": [m.step for m in metrics],
        f"{prefix}timestamp": [m.timestamp for m in metrics],
        f"{prefix}value": [m.value for m in metrics],
    }


async def record(
    session: AsyncSession, experiment_id: uuid.UUID, metrics: Sequence[Logged]
) -> None:
    """Store the values (an identical one again is stored once) and move each metric's latest
    value forward: one statement, whatever the number of values."""
    if metrics:
        await session.execute(RECORD, record_parameters(experiment_id, metrics))


def last_per_step(metrics: Iterable[Logged]) -> dict[int, dict[str, Logged]]:
    """Runyard's epoch view of a batch: per step >= 0, per metric, the value MLflow would call
    the latest of that step (greatest timestamp, then value). Non-finite values are left out
    (an epoch's metrics are finite numbers)."""
    epochs: dict[int, dict[str, Logged]] = {}
    for metric in metrics:
        if metric.step < 0 or not math.isfinite(metric.value):
            continue
        step = epochs.setdefault(metric.step, {})
        seen = step.get(metric.key)
        if seen is None or metric.order() > seen.order():
            step[metric.key] = metric
    return epochs


def _stored(experiment_id: uuid.UUID, key: str, row: Any) -> Stored:
    return Stored(
        key=key,
        value=float(row.value),
        timestamp=int(row.timestamp),
        step=int(row.step),
        experiment_id=experiment_id,
    )


async def has_log(session: AsyncSession, experiment_id: uuid.UUID, key: str) -> bool:
    found = await session.scalar(
        select(MlflowMetric.step)
        .where(MlflowMetric.experiment_id == experiment_id, MlflowMetric.key == key)
        .limit(1)
    )
    return found is not None


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


async def runs_history(
    session: AsyncSession,
    experiment_id: uuid.UUID,
    key: str,
    *,
    start_step: int | None = None,
    end_step: int | None = None,
) -> list[Stored]:
    """A metric logged through Runyard's own API, as MLflow history: one value per epoch, the
    epoch row's last change as its timestamp."""
    value = run_metric(key)
    query = select(TrainingRun.epoch, value.label("value"), TrainingRun.updated_at).where(
        TrainingRun.experiment_id == experiment_id, value.is_not(None)
    )
    if start_step is not None and end_step is not None:
        query = query.where(TrainingRun.epoch.between(start_step, end_step))
    rows = (await session.execute(query.order_by(TrainingRun.epoch))).all()
    return [
        Stored(
            key=key,
            value=float(value_),
            timestamp=_ms(updated_at),
            step=int(epoch),
            experiment_id=experiment_id,
        )
        for epoch, value_, updated_at in rows
    ]


async def history(
    session: AsyncSession,
    experiment_id: uuid.UUID,
    key: str,
    *,
    limit: int | None = None,
    offset: int = 0,
) -> list[Stored]:
    """MLflow's ``get_metric_history``: every value, ordered by (timestamp, step, value)."""
    if not await has_log(session, experiment_id, key):
        found = await runs_history(session, experiment_id, key)
        found.sort(key=lambda m: (m.timestamp, m.step, m.value))
        end = None if limit is None else offset + limit
        return found[offset:end]
    query = (
        select(MlflowMetric.step, MlflowMetric.timestamp, MlflowMetric.value)
        .where(MlflowMetric.experiment_id == experiment_id, MlflowMetric.key == key)
        .order_by(MlflowMetric.timestamp, MlflowMetric.step, MlflowMetric.value)
        .offset(offset)
    )
    if limit is not None:
        query = query.limit(limit)
    return [_stored(experiment_id, key, row) for row in (await session.execute(query)).all()]


async def sampled(
    session: AsyncSession,
    experiment_id: uuid.UUID,
    key: str,
    *,
    max_results: int,
    start_step: int | None,
    end_step: int | None,
) -> list[Stored]:
    """MLflow 3's ``get_metric_history_bulk_interval`` for one run: ``max_results`` buckets of
    the values ordered by (step, timestamp, value), the first of each, and the last value
    always (replacing the last sample when there are already ``max_results``)."""
    max_results = max(1, max_results)
    if not await has_log(session, experiment_id, key):
        rows = await runs_history(
            session, experiment_id, key, start_step=start_step, end_step=end_step
        )
        return _sample(rows, max_results)
    where = [MlflowMetric.experiment_id == experiment_id, MlflowMetric.key == key]
    if start_step is not None and end_step is not None:
        where += [MlflowMetric.step >= start_step, MlflowMetric.step <= end_step]
    order = (MlflowMetric.step, MlflowMetric.timestamp, MlflowMetric.value)
    bucketed = (
        select(
            MlflowMetric.step,
            MlflowMetric.timestamp,
            MlflowMetric.value,
            func.ntile(max_results).over(order_by=order).label("bucket"),
        )
        .where(*where)
        .subquery()
    )
    ranked = select(
        bucketed.c.step,
        bucketed.c.timestamp,
        bucketed.c.value,
        func.row_number()
        .over(
            partition_by=bucketed.c.bucket,
            order_by=(bucketed.c.step, bucketed.c.timestamp, bucketed.c.value),
        )
        .label("rn"),
    ).subquery()
    rows = [
        _stored(experiment_id, key, row)
        for row in (
            await session.execute(
                select(ranked.c.step, ranked.c.timestamp, ranked.c.value)
                .where(ranked.c.rn == 1)
                .order_by(ranked.c.step, ranked.c.timestamp, ranked.c.value)
            )
        ).all()
    ]
    last = (
        await session.execute(
            select(MlflowMetric.step, MlflowMetric.timestamp, MlflowMetric.value)
            .where(*where)
            .order_by(*(column.desc() for column in order))
            .limit(1)
        )
    ).first()
    if last is not None:
        _keep_last(rows, _stored(experiment_id, key, last), max_results)
    return rows


def _same(a: Logged, b: Logged) -> bool:
    same_value = a.value == b.value or (math.isnan(a.value) and math.isnan(b.value))
    return (a.step, a.timestamp) == (b.step, b.timestamp) and same_value


def _keep_last(rows: list[Stored], last: Stored, max_results: int) -> None:
    if rows and _same(rows[-1], last):
        return
    if len(rows) >= max_results:
        rows[-1] = last
    else:
        rows.append(last)


def _sample(rows: list[Stored], max_results: int) -> list[Stored]:
    """NTILE in Python, for histories read from ``training_runs`` (already in step order)."""
    if len(rows) <= max_results:
        return rows
    total = len(rows)
    # NTILE: the first (total % n) buckets hold one row more
    size, extra = divmod(total, max_results)
    picked: list[Stored] = []
    index = 0
    for bucket in range(max_results):
        picked.append(rows[index])
        index += size + (1 if bucket < extra else 0)
    _keep_last(picked, rows[-1], max_results)
    return picked


def ids_parameter() -> Any:
    """``= any_(ids_parameter())`` in a statement built once: its ids are given when it runs,
    as ``{"ids": [...]}``."""
    return bindparam("ids", type_=ARRAY(Uuid))


#: each metric's latest value of the runs ``ids`` (built once: see ``metrics.write_points``)
_LATEST = (
    select(
        MlflowLatestMetric.experiment_id,
        MlflowLatestMetric.key,
        MlflowLatestMetric.value,
        MlflowLatestMetric.timestamp,
        MlflowLatestMetric.step,
    )
    .where(MlflowLatestMetric.experiment_id == any_(ids_parameter()))
    .order_by(MlflowLatestMetric.experiment_id, MlflowLatestMetric.key)
)


async def latest(
    session: AsyncSession, experiment_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[LatestMetric]]:
    """Each run's latest value of each metric MLflow logged, by key (one statement for a page
    of runs)."""
    found: dict[uuid.UUID, list[LatestMetric]] = {}
    if not experiment_ids:
        return found
    connection = await session.connection()  # Core: no ORM loading per row
    rows = await connection.execute(_LATEST, {"ids": list(experiment_ids)})
    for experiment_id, key, value, timestamp, step in rows:
        found.setdefault(experiment_id, []).append(LatestMetric(key, value, timestamp, step))
    return found
