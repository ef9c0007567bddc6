"""The downsampled history of an experiment's training runs, computed in PostgreSQL.

The epochs in the asked range are cut into ``buckets`` equal epoch ranges; each bucket gives,
per metric, the smallest, the largest and the last value (the value at the bucket's highest
epoch that has the metric). Spikes survive, unlike every-k-th-point sampling. One pass over the
runs in the range with plain aggregates (min, max, and the highest epoch having each metric:
no sort and no array per row), then the values at those epochs by their key.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import BigInteger, Integer, and_, any_, bindparam, cast, func, literal, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from runyard.experiments.models import TrainingRun
from runyard.experiments.tracking.repository.runs import run_metric


@dataclass
class SeriesValues:
    min: list[float | None] = field(default_factory=list)
    max: list[float | None] = field(default_factory=list)
    last: list[float | None] = field(default_factory=list)


@dataclass
class History:
    points: int
    from_epoch: int | None
    to_epoch: int | None
    epoch: list[int] = field(default_factory=list)
    time: list[float] = field(default_factory=list)
    series: dict[str, SeriesValues] = field(default_factory=dict)


async def downsampled_history(
    session: AsyncSession,
    experiment_id: uuid.UUID,
    *,
    metrics: list[str],
    buckets: int,
    from_epoch: int | None,
    to_epoch: int | None,
) -> History:
    in_range = [TrainingRun.experiment_id == experiment_id]
    if from_epoch is not None:
        in_range.append(TrainingRun.epoch >= from_epoch)
    if to_epoch is not None:
        in_range.append(TrainingRun.epoch <= to_epoch)
    bounds = (
        await session.execute(
            select(func.min(TrainingRun.epoch), func.max(TrainingRun.epoch), func.count()).where(
                and_(*in_range)
            )
        )
    ).one()
    low, high, points = bounds
    history = History(points=int(points), from_epoch=low, to_epoch=high)
    history.series = {m: SeriesValues() for m in metrics}
    if not points:
        return history

    span = int(high) - int(low) + 1
    bucket = (
        (cast(TrainingRun.epoch, BigInteger) - literal(int(low))) * literal(buckets)
    ) // literal(span)
    values = [run_metric(metric) for metric in metrics]
    columns: list[Any] = [bucket.label("bucket"), func.max(TrainingRun.epoch).label("epoch")]
    for i, value in enumerate(values):
        columns += [
            func.min(value).label(f"min{i}"),
            func.max(value).label(f"max{i}"),
            func.max(TrainingRun.epoch).filter(value.is_not(None)).label(f"last{i}"),
        ]
    # no ORDER BY: the planner cannot know there are at most ``buckets`` groups and would sort
    # every run (on disk) before grouping; a hash aggregate and a sort of the buckets is faster
    found = await session.execute(select(*columns).where(and_(*in_range)).group_by(bucket))
    rows = sorted(found.mappings().all(), key=lambda row: int(row["bucket"]))
    # the last values and times: the rows at those epochs, read by the (experiment, epoch) key
    wanted = {row["epoch"] for row in rows}
    wanted.update(row[f"last{i}"] for row in rows for i in range(len(values)))
    wanted.discard(None)
    at_epoch = {
        found[0]: found
        for found in await session.execute(
            select(
                TrainingRun.epoch,
                func.extract("epoch", TrainingRun.created_at),
                *values,
            ).where(
                TrainingRun.experiment_id == experiment_id,
                TrainingRun.epoch == any_(bindparam("epochs", sorted(wanted), ARRAY(Integer))),
            )
        )
    }
    for row in rows:
        history.epoch.append(int(row["epoch"]))
        history.time.append(float(at_epoch[row["epoch"]][1]))
        for i, metric in enumerate(metrics):
            series = history.series[metric]
            series.min.append(row[f"min{i}"])
            series.max.append(row[f"max{i}"])
            last = row[f"last{i}"]
            series.last.append(None if last is None else at_epoch[last][2 + i])
    return history
