"""The downsampled history of an experiment's training runs, computed in PostgreSQL.

The epochs in the asked range are cut into ``buckets`` ranges; each bucket gives, per metric,
the smallest, the largest and the last value (the value at the bucket's highest epoch that has
the metric). Spikes survive, unlike every-k-th-point sampling.

Reading a million runs for every chart is too slow, so ``history_blocks`` keeps a summary per
metric of aligned blocks of epochs (16, 64, 256, 1,024 and 4,096 epochs: levels 0-4), written in
the transaction that writes the runs (``record_runs``): count, min, max, and the last epoch
with its value and time. Levels 1-3 leave out the runs of the experiment's tail block (the
level-0 block of its highest epoch) and take that block when the run moves past it: a training
loop's next epoch writes a metric's level-0 and level-4 rows, not five.

A read whose buckets hold at least 16 epochs each puts its bucket boundaries on multiples of
the coarsest block size that fits (the buckets then differ in width by at most one block) and
reads whole blocks of that size; only the ends of the range, where it starts or stops inside a
block that has runs outside it, are read from finer blocks and runs, and where a block of
levels 1-3 covers the tail block, the tail's level-0 row is read with it. The values are exact
for the buckets returned: the same as aggregating the runs of each bucket (``use_summary=False``
does that, and the tests compare the two). A finer read (fewer than 16 epochs per bucket: at
most 16 x buckets runs) cuts the range into ``buckets`` equal ranges and aggregates the runs,
as before the summary existed.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import Float, Integer, and_, any_, bindparam, cast, func, select, text
from sqlalchemy.dialects.postgresql import ARRAY, aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncSession

from runyard.experiments.models import SCHEMA, TrainingRun
from runyard.experiments.tracking.repository.runs import RUN_COLUMNS, run_metric

#: level 0's blocks hold 2**BASE_SHIFT epochs, each next level's 2**LEVEL_SHIFT times as many
BASE_SHIFT = 4
LEVEL_SHIFT = 2
LEVELS = 5
#: the epochs of a block of each level: 16, 64, 256, 1024, 4096
BLOCK_SIZES = tuple(1 << (BASE_SHIFT + LEVEL_SHIFT * level) for level in range(LEVELS))
#: the levels whose blocks leave out the runs of the experiment's tail block (the level-0
#: block of its highest epoch); level 0 and the top level hold every run
TAILLESS = range(1, LEVELS - 1)
#: the summary row of every run of a block (no metric is named '': names have 1+ characters)
ALL_RUNS = ""
#: an epoch above every epoch a run can have (runs' epochs are 32-bit integers)
EPOCH_CEILING = 2**31 - 1


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


# --- the summary's upkeep, in the transaction that writes the runs --------------------------

#: a run's metrics as (metric, value) rows: '' for the run itself, then each metric it has, by
#: the rule of ``runs.run_metric`` (a column, else a number under another name in ``metrics``)
_UNPIVOT = f"""
    SELECT '' AS metric, NULL::float8 AS value
    {"".join(f" UNION ALL SELECT '{c}', r.{c} WHERE r.{c} IS NOT NULL" for c in RUN_COLUMNS)}
    UNION ALL SELECT k.key, {SCHEMA}.jsonb_number(r.metrics, k.key)
      FROM jsonb_each(r.metrics) AS k
      WHERE jsonb_typeof(k.value) = 'number'
        AND k.key NOT IN ('', {", ".join(f"'{c}'" for c in RUN_COLUMNS)})
"""  # noqa: S608 (constants only; in every statement here values are bound parameters)
_COLUMNS = "experiment_id, metric, level, block, n, min, max, last_epoch, last_value, last_at"
_LAST = "(array_agg({value} ORDER BY {epoch} DESC))[1]"

#: merge the new runs of a batch into the blocks. Levels 0 and 4 take them all. Levels 1-3
#: (``TAILLESS``) summarise only the runs below the experiment's tail block (the level-0 block
#: of its highest epoch), so that a training loop's next epoch writes two rows per metric, not
#: five: they take the batch's runs below the tail and, when the batch moved the tail up, the
#: old tail's level-0 rows as they were before this statement (the runs logged there before;
#: the batch's own runs there come from the batch). Runs new to the experiment only: counts
#: add up, and a block's last epoch moves only to a higher one.
_ADD_RUNS = text(f"""
    WITH base AS (
        SELECT v.metric, r.epoch >> {BASE_SHIFT} AS block, count(*) AS n,
               min(v.value) AS min, max(v.value) AS max, max(r.epoch) AS last_epoch,
               {_LAST.format(value="v.value", epoch="r.epoch")} AS last_value,
               {_LAST.format(value="r.created_at", epoch="r.epoch")} AS last_at
        FROM {SCHEMA}.training_runs AS r
        CROSS JOIN LATERAL ({_UNPIVOT}) AS v
        WHERE r.experiment_id = :experiment_id AND r.epoch = ANY(:epochs)
        GROUP BY 1, 2
    ),
    tail AS (
        SELECT (SELECT max(r.epoch) >> {BASE_SHIFT} FROM {SCHEMA}.training_runs AS r
                WHERE r.experiment_id = :experiment_id) AS new,
               (SELECT max(r.epoch) >> {BASE_SHIFT} FROM {SCHEMA}.training_runs AS r
                WHERE r.experiment_id = :experiment_id AND r.epoch <> ALL(:epochs)) AS old
    ),
    added AS (
        SELECT b.*, l.level FROM base AS b
        CROSS JOIN (VALUES (0), ({LEVELS - 1})) AS l(level)
        UNION ALL
        SELECT c.*, l.level FROM (
            SELECT b.* FROM base AS b, tail WHERE b.block < tail.new
            UNION ALL
            SELECT h.metric, h.block, h.n, h.min, h.max, h.last_epoch, h.last_value, h.last_at
            FROM {SCHEMA}.history_blocks AS h, tail
            WHERE h.experiment_id = :experiment_id AND h.level = 0 AND h.block = tail.old
              AND tail.old < tail.new
        ) AS c
        CROSS JOIN generate_series(1, {LEVELS - 2}) AS l(level)
    )
    INSERT INTO {SCHEMA}.history_blocks AS h ({_COLUMNS})
    SELECT :experiment_id, a.metric, a.level, a.block >> ({LEVEL_SHIFT} * a.level),
           sum(a.n), min(a.min), max(a.max), max(a.last_epoch),
           {_LAST.format(value="a.last_value", epoch="a.last_epoch")},
           {_LAST.format(value="a.last_at", epoch="a.last_epoch")}
    FROM added AS a
    GROUP BY a.metric, a.level, 4
    ON CONFLICT (experiment_id, metric, level, block) DO UPDATE SET
        n = h.n + excluded.n,
        min = least(h.min, excluded.min),
        max = greatest(h.max, excluded.max),
        last_epoch = greatest(h.last_epoch, excluded.last_epoch),
        last_value = CASE WHEN excluded.last_epoch > h.last_epoch
                          THEN excluded.last_value ELSE h.last_value END,
        last_at = CASE WHEN excluded.last_epoch > h.last_epoch
                       THEN excluded.last_at ELSE h.last_at END
""").bindparams(bindparam("epochs", type_=ARRAY(Integer)))  # noqa: S608

_REPLACE = """
    ON CONFLICT (experiment_id, metric, level, block) DO UPDATE SET
        n = excluded.n, min = excluded.min, max = excluded.max, last_epoch = excluded.last_epoch,
        last_value = excluded.last_value, last_at = excluded.last_at
"""
#: the blocks of ``blocks`` at ``level`` computed again from ``source``; summary rows of a
#: metric the blocks no longer have are deleted
_REBUILD = f"""
    WITH tail AS (
        SELECT max(r.epoch) >> {BASE_SHIFT} AS block FROM {SCHEMA}.training_runs AS r
        WHERE r.experiment_id = :experiment_id
    ),
    fresh AS ({{source}}),
    gone AS (
        DELETE FROM {SCHEMA}.history_blocks AS h
        WHERE h.experiment_id = :experiment_id AND h.level = CAST(:level AS smallint)
          AND h.block = ANY(CAST(:blocks AS int[]))
          AND NOT EXISTS (SELECT FROM fresh f WHERE f.metric = h.metric AND f.block = h.block)
    )
    INSERT INTO {SCHEMA}.history_blocks ({_COLUMNS})
    SELECT {_COLUMNS} FROM fresh
    {_REPLACE}
"""  # noqa: S608
#: level 0 from the runs. (``OFFSET 0`` keeps each lateral subquery a scan of its own range:
#: flattened, the planner would join the block list to every run of the experiment.)
_REBUILD_FROM_RUNS = text(
    _REBUILD.format(
        source=f"""
        SELECT r.experiment_id, v.metric, 0 AS level, b.block, count(*) AS n,
               min(v.value) AS min, max(v.value) AS max, max(r.epoch) AS last_epoch,
               {_LAST.format(value="v.value", epoch="r.epoch")} AS last_value,
               {_LAST.format(value="r.created_at", epoch="r.epoch")} AS last_at
        FROM unnest(CAST(:blocks AS int[])) AS b(block)
        CROSS JOIN LATERAL (
            SELECT * FROM {SCHEMA}.training_runs AS t
            WHERE t.experiment_id = :experiment_id
              AND t.epoch BETWEEN b.block << {BASE_SHIFT} AND ((b.block + 1) << {BASE_SHIFT}) - 1
            OFFSET 0
        ) AS r
        CROSS JOIN LATERAL ({_UNPIVOT}) AS v
        GROUP BY r.experiment_id, v.metric, b.block"""  # noqa: S608
    )
)
#: a level above 0 from the level below: level 1 without the tail block, level 4 with it
_REBUILD_FROM_BLOCKS = text(
    _REBUILD.format(
        source=f"""
        SELECT s.experiment_id, s.metric, CAST(:level AS smallint) AS level, b.block,
               sum(s.n)::int AS n,
               min(s.min) AS min, max(s.max) AS max, max(s.last_epoch) AS last_epoch,
               {_LAST.format(value="s.last_value", epoch="s.last_epoch")} AS last_value,
               {_LAST.format(value="s.last_at", epoch="s.last_epoch")} AS last_at
        FROM unnest(CAST(:blocks AS int[])) AS b(block)
        CROSS JOIN LATERAL (
            SELECT * FROM {SCHEMA}.history_blocks AS t
            WHERE t.experiment_id = :experiment_id AND t.level = CAST(:level AS smallint) - 1
              AND t.block BETWEEN b.block << {LEVEL_SHIFT}
                              AND ((b.block + 1) << {LEVEL_SHIFT}) - 1
              AND (t.level > 0 OR t.block < (SELECT tail.block FROM tail))
            UNION ALL
            SELECT * FROM {SCHEMA}.history_blocks AS t
            WHERE CAST(:level AS smallint) = {LEVELS - 1} AND t.experiment_id = :experiment_id
              AND t.level = 0 AND t.block = (SELECT tail.block FROM tail)
              AND t.block >> ({LEVEL_SHIFT} * {LEVELS - 1}) = b.block
            OFFSET 0
        ) AS s
        GROUP BY s.experiment_id, s.metric, b.block"""  # noqa: S608
    )
)


async def record_runs(
    session: AsyncSession,
    experiment_id: uuid.UUID,
    *,
    inserted: Sequence[int],
    rewritten: Sequence[int],
) -> None:
    """Keep ``history_blocks`` true after a batch wrote runs: ``inserted`` the epochs new to the
    experiment, ``rewritten`` those logged before whose values the batch changed (a re-run from
    a checkpoint). New runs are merged into their blocks in one statement; a rewritten run may
    have held a block's min or max, so its blocks are computed again, level by level (one
    statement each, rarely needed). Unchanged runs (a retried request) change nothing."""
    if inserted:
        await session.execute(
            _ADD_RUNS, {"experiment_id": experiment_id, "epochs": sorted(inserted)}
        )
    if rewritten:
        blocks = sorted({epoch >> BASE_SHIFT for epoch in rewritten})
        parameters = {"experiment_id": experiment_id, "level": 0, "blocks": blocks}
        await session.execute(_REBUILD_FROM_RUNS, parameters)
        for level in range(1, LEVELS):
            blocks = sorted({block >> LEVEL_SHIFT for block in blocks})
            parameters = {"experiment_id": experiment_id, "level": level, "blocks": blocks}
            await session.execute(_REBUILD_FROM_BLOCKS, parameters)


async def rebuild_summary(session: AsyncSession, experiment_id: uuid.UUID) -> None:
    """Compute every block of the experiment again from its runs (for runs written around
    ``record_runs``, as a benchmark's seed does; migration 0006 fills it the same way)."""
    epochs = select(TrainingRun.epoch.op(">>")(BASE_SHIFT)).where(
        TrainingRun.experiment_id == experiment_id
    )
    blocks = list((await session.scalars(epochs.distinct())).all())
    await record_runs(
        session, experiment_id, inserted=(), rewritten=[b << BASE_SHIFT for b in blocks]
    )


# --- the read -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """How a read cuts its range: ``bounds`` are the first epochs of buckets 1..n-1 (bucket
    0 is everything below ``bounds[0]``); ``level`` the summary level whose blocks the buckets
    are made of, None to aggregate the runs."""

    level: int | None
    bounds: list[int]


def plan_buckets(low: int, high: int, buckets: int) -> Plan:
    """Equal ranges when a bucket would hold fewer than 16 epochs; else each boundary moved to
    the nearest multiple of the coarsest block size that is at most the bucket width, so every
    bucket is whole blocks of that size (boundaries stay strictly increasing and inside the
    range: they are at least one block apart before rounding)."""
    span = high - low + 1
    fitting = [level for level, size in enumerate(BLOCK_SIZES) if size * buckets <= span]
    level = fitting[-1] if fitting else None
    b = np.arange(1, buckets, dtype=np.int64)  # (epochs are < 2**31: no overflow below)
    if level is None:
        # bucket b starts at the first epoch e with (e - low) * buckets // span >= b
        exact = low + -(-(b * span) // buckets)
        return Plan(None, np.unique(exact).tolist())
    size = BLOCK_SIZES[level]
    # the multiple of size nearest to low + b * span / buckets, in integers
    rounded = size * ((2 * (low * buckets + b * span) + buckets * size) // (2 * buckets * size))
    return Plan(level, rounded.tolist())


@dataclass
class Pieces:
    """Disjoint parts of a range: runs of summary blocks (level, first, last block) and runs of
    epochs (first, last) read from ``training_runs``."""

    levels: list[int] = field(default_factory=list)
    first_blocks: list[int] = field(default_factory=list)
    last_blocks: list[int] = field(default_factory=list)
    first_epochs: list[int] = field(default_factory=list)
    last_epochs: list[int] = field(default_factory=list)


def cover(start: int, stop: int, top: int | None) -> Pieces:
    """``[start, stop]`` as the coarsest blocks of levels up to ``top`` that fit (none when
    ``top`` is None) and epochs for what no block fits: at most a few blocks of each level and
    under 16 epochs at each end, plus one run of ``top`` blocks in the middle."""
    pieces = Pieces()
    if top is None:
        pieces.first_epochs.append(start)
        pieces.last_epochs.append(stop)
        return pieces
    epoch = start
    while epoch <= stop:
        for level in range(top, -1, -1):
            size = BLOCK_SIZES[level]
            if epoch % size or epoch + size - 1 > stop:
                continue
            end = (stop + 1) // size * size
            if level < top:  # up to where the next level's blocks start
                end = min(end, (epoch // (size << LEVEL_SHIFT) + 1) * (size << LEVEL_SHIFT))
            pieces.levels.append(level)
            pieces.first_blocks.append(epoch // size)
            pieces.last_blocks.append(end // size - 1)
            epoch = end
            break
        else:
            base = BLOCK_SIZES[0]
            end = min(stop, (epoch // base + 1) * base - 1)
            pieces.first_epochs.append(epoch)
            pieces.last_epochs.append(end)
            epoch = end + 1
    return pieces


def with_tail(pieces: Pieces, tail: int) -> None:
    """The tail block (the level-0 block of the experiment's highest epoch) added as a piece of
    its own when a piece of a ``TAILLESS`` level covers it: those levels leave its runs out."""
    for level, first, last in zip(
        pieces.levels, pieces.first_blocks, pieces.last_blocks, strict=True
    ):
        if level in TAILLESS and first <= tail >> (LEVEL_SHIFT * level) <= last:
            pieces.levels.append(0)
            pieces.first_blocks.append(tail)
            pieces.last_blocks.append(tail)
            return


def _run_values(metrics: list[str]) -> tuple[str, dict[str, Any]]:
    """The VALUES list that turns a run into (metric, value) rows for ``metrics``, with its
    parameters (column metrics by their whitelisted name, the others by the key, bound)."""
    rows = ["('', NULL::float8)"]
    parameters: dict[str, Any] = {}
    for i, metric in enumerate(metrics):
        parameters[f"m{i}"] = metric
        if metric in RUN_COLUMNS:
            rows.append(f"(CAST(:m{i} AS text), r.{metric})")
        else:
            rows.append(f"(CAST(:m{i} AS text), {SCHEMA}.jsonb_number(r.metrics, :m{i}))")
    return ", ".join(rows), parameters


_RUNS_COLUMNS = {
    "start": "p.start",
    "n": "p.n",
    "last_epoch": "p.last_epoch",
    "last_at": "extract(epoch FROM p.last_at)::float8",
}
_METRIC_COLUMNS = {"start": "p.start", "min": "p.min", "max": "p.max", "last_value": "p.last_value"}


def _pieces_statement(metrics: list[str]) -> tuple[Any, dict[str, Any]]:
    """One row: per metric the pieces of ``Pieces`` as parallel arrays (their first epochs and
    their min, max and last value; for '' their runs, last epoch and its time). A few thousand
    summary rows and a few runs, one plain aggregate: no sort and no grouping in the database
    (``_bucketed`` cuts the arrays into buckets)."""
    values, parameters = _run_values(metrics)
    columns = []
    for i, (name, wanted) in enumerate(
        [(ALL_RUNS, _RUNS_COLUMNS)] + [(metric, _METRIC_COLUMNS) for metric in metrics]
    ):
        parameters[f"n{i}"] = name
        columns += [
            f"array_agg({expression}) FILTER (WHERE p.metric = CAST(:n{i} AS text)) AS c{i}_{key}"
            for key, expression in wanted.items()
        ]
    statement = text(f"""
        SELECT {", ".join(columns)}
        FROM (
            SELECT h.metric, (h.block << ({BASE_SHIFT} + {LEVEL_SHIFT} * h.level)) AS start,
                   h.n, h.min, h.max, h.last_epoch, h.last_value, h.last_at
            FROM unnest(CAST(:levels AS int[]), CAST(:first_blocks AS int[]),
                        CAST(:last_blocks AS int[])) AS q(level, first, last)
            CROSS JOIN LATERAL (
                SELECT * FROM {SCHEMA}.history_blocks AS t
                WHERE t.experiment_id = :experiment_id
                  AND t.metric = ANY(CAST(:names AS text[])) AND t.level = q.level
                  AND t.block BETWEEN q.first AND q.last
                OFFSET 0
            ) AS h
            UNION ALL
            SELECT v.metric, r.epoch, 1, v.value, v.value, r.epoch, v.value, r.created_at
            FROM unnest(CAST(:first_epochs AS int[]), CAST(:last_epochs AS int[]))
                 AS q(first, last)
            CROSS JOIN LATERAL (
                SELECT * FROM {SCHEMA}.training_runs AS t
                WHERE t.experiment_id = :experiment_id AND t.epoch BETWEEN q.first AND q.last
                OFFSET 0
            ) AS r
            CROSS JOIN LATERAL (VALUES {values}) AS v(metric, value)
            WHERE v.value IS NOT NULL OR v.metric = ''
        ) AS p
    """)  # noqa: S608
    return statement, parameters


@dataclass
class _Buckets:
    """One metric's pieces reduced per bucket: the bucket numbers, and per bucket the runs,
    min, max, last epoch and the value and time at that epoch."""

    bucket: list[int]
    n: list[int] = field(default_factory=list)
    min: list[float] = field(default_factory=list)
    max: list[float] = field(default_factory=list)
    last_epoch: list[int] = field(default_factory=list)
    last_value: list[float] = field(default_factory=list)
    last_at: list[float] = field(default_factory=list)


def _bucketed(bounds: np.ndarray[Any, Any], row: Any, i: int, *, values: bool) -> _Buckets:
    """The pieces of ``c{i}_*`` in epoch order, cut where the bucket changes: a bucket's min and
    max are those of its pieces, its last epoch, value and time those of its last piece (the
    pieces hold disjoint runs, so the last in epoch order holds the bucket's highest epoch; the
    tail's piece starts after the block of levels 1-3 that covers it, whose row exists only when
    it has runs below the tail)."""
    start = np.asarray(row[f"c{i}_start"], dtype=np.int64)
    order = np.argsort(start, kind="stable")
    bucket = np.searchsorted(bounds, start[order], side="right")
    first = np.flatnonzero(np.diff(bucket, prepend=-1))
    last = np.append(first[1:], len(bucket)) - 1

    def pick(key: str, dtype: Any) -> np.ndarray[Any, Any]:
        return np.asarray(row[f"c{i}_{key}"], dtype=dtype)[order]

    found = _Buckets(bucket[first].tolist())
    if values:
        found.min = np.minimum.reduceat(pick("min", np.float64), first).tolist()
        found.max = np.maximum.reduceat(pick("max", np.float64), first).tolist()
        found.last_value = pick("last_value", np.float64)[last].tolist()
    else:  # the row of every run: counts, epochs and times, no values
        found.n = np.add.reduceat(pick("n", np.int64), first).tolist()
        found.last_epoch = pick("last_epoch", np.int64)[last].tolist()
        found.last_at = pick("last_at", np.float64)[last].tolist()
    return found


def _nulls(count: int) -> list[float | None]:
    return [None] * count


async def _from_pieces(
    session: AsyncSession,
    experiment_id: uuid.UUID,
    metrics: list[str],
    bounds: list[int],
    pieces: Pieces,
    history: History,
) -> None:
    statement, parameters = _pieces_statement(metrics)
    found = await session.execute(
        statement,
        {
            **parameters,
            "experiment_id": experiment_id,
            "names": [ALL_RUNS, *metrics],
            "levels": pieces.levels,
            "first_blocks": pieces.first_blocks,
            "last_blocks": pieces.last_blocks,
            "first_epochs": pieces.first_epochs,
            "last_epochs": pieces.last_epochs,
        },
    )
    row = found.mappings().one()
    if row["c0_start"] is None:  # no runs in the pieces
        return
    edges = np.asarray(bounds, dtype=np.int64)
    runs = _bucketed(edges, row, 0, values=False)
    history.points = sum(runs.n)
    history.epoch = runs.last_epoch
    history.time = runs.last_at
    position = {bucket: i for i, bucket in enumerate(runs.bucket)}
    for i, metric in enumerate(metrics, start=1):
        series = history.series[metric]
        series.min, series.max, series.last = (_nulls(len(runs.bucket)) for _ in range(3))
        if row[f"c{i}_start"] is None:
            continue
        found_metric = _bucketed(edges, row, i, values=True)
        if found_metric.bucket == runs.bucket:  # the metric in every bucket
            series.min, series.max = list(found_metric.min), list(found_metric.max)
            series.last = list(found_metric.last_value)
            continue
        for j, bucket in enumerate(found_metric.bucket):
            at = position[bucket]
            series.min[at] = found_metric.min[j]
            series.max[at] = found_metric.max[j]
            series.last[at] = found_metric.last_value[j]


async def _from_runs(
    session: AsyncSession,
    experiment_id: uuid.UUID,
    metrics: list[str],
    bounds: list[int],
    low: int,
    high: int,
    history: History,
) -> None:
    """One pass over the runs with plain aggregates per bucket (min, max, and the highest epoch
    having each metric: no sort and no array per row), then the values at those epochs by
    their key; each answer one row of arrays (decoded by the driver, not row by row). No ORDER
    BY in the grouping: the planner cannot know there are at most ``len(bounds) + 1`` groups
    and would sort every run before grouping; a hash aggregate is faster."""
    in_range = and_(
        TrainingRun.experiment_id == experiment_id,
        TrainingRun.epoch >= low,
        TrainingRun.epoch <= high,
    )
    bucket = func.width_bucket(TrainingRun.epoch, bindparam("bounds", bounds, ARRAY(Integer)))
    values = [run_metric(metric) for metric in metrics]
    columns: list[Any] = [
        bucket.label("bucket"),
        func.max(TrainingRun.epoch).label("epoch"),
        func.count().label("n"),
    ]
    for i, value in enumerate(values):
        columns += [
            func.min(value).label(f"min{i}"),
            func.max(value).label(f"max{i}"),
            func.max(TrainingRun.epoch).filter(value.is_not(None)).label(f"last{i}"),
        ]
    grouped = select(*columns).where(in_range).group_by(bucket).subquery()
    in_order = [
        func.array_agg(aggregate_order_by(column, grouped.c.bucket)).label(column.name)
        for column in grouped.c
    ]
    row = (await session.execute(select(*in_order))).mappings().one()
    if row["bucket"] is None:
        return
    wanted = set(row["epoch"])
    for i in range(len(values)):
        wanted.update(row[f"last{i}"])
    wanted.discard(None)
    at = (
        await session.execute(
            select(
                func.array_agg(TrainingRun.epoch),
                func.array_agg(cast(func.extract("epoch", TrainingRun.created_at), Float)),
                *(func.array_agg(value) for value in values),
            ).where(
                TrainingRun.experiment_id == experiment_id,
                TrainingRun.epoch == any_(bindparam("epochs", sorted(wanted), ARRAY(Integer))),
            )
        )
    ).one()
    index = {epoch: k for k, epoch in enumerate(at[0])}
    history.points = sum(row["n"])
    history.epoch = list(row["epoch"])
    history.time = [at[1][index[epoch]] for epoch in row["epoch"]]
    for i, metric in enumerate(metrics):
        series, found = history.series[metric], at[2 + i]
        series.min, series.max = list(row[f"min{i}"]), list(row[f"max{i}"])
        series.last = [None if e is None else found[index[e]] for e in row[f"last{i}"]]


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


async def downsampled_history(
    session: AsyncSession,
    experiment_id: uuid.UUID,
    *,
    metrics: list[str],
    buckets: int,
    from_epoch: int | None,
    to_epoch: int | None,
    use_summary: bool = True,
) -> History:
    """The history of ``[from_epoch, to_epoch]`` in at most ``buckets`` buckets (the empty
    ones left out). ``use_summary=False`` cuts the range the same way but aggregates the runs:
    the answer is the same, slower (tests compare the two)."""
    start = 0 if from_epoch is None else from_epoch
    stop = EPOCH_CEILING if to_epoch is None else to_epoch
    epoch = TrainingRun.epoch
    of_experiment = TrainingRun.experiment_id == experiment_id

    def edge(aggregate: Any, *where: Any) -> Any:
        return select(aggregate).where(of_experiment, *where).scalar_subquery()

    # the range's first and last run, and the nearest runs outside it: index probes
    low, high, before, after = (
        await session.execute(
            select(
                edge(func.min(epoch), epoch >= start, epoch <= stop),
                edge(func.max(epoch), epoch >= start, epoch <= stop),
                edge(func.max(epoch), epoch < start),
                edge(func.min(epoch), epoch > stop),
            )
        )
    ).one()
    history = History(points=0, from_epoch=_int_or_none(low), to_epoch=_int_or_none(high))
    history.series = {m: SeriesValues() for m in metrics}
    if low is None or high is None:
        return history
    plan = plan_buckets(int(low), int(high), buckets)
    if plan.level is None or not use_summary:
        await _from_runs(session, experiment_id, metrics, plan.bounds, low, high, history)
        return history
    # the blocks may reach past the range wherever no run lies between it and the next run
    # outside it: the whole block then holds only runs of the range
    first = 0 if before is None else int(before) + 1
    last = EPOCH_CEILING if after is None else int(after) - 1
    pieces = cover(first, last, plan.level)
    if after is None:
        with_tail(pieces, int(high) >> BASE_SHIFT)
    await _from_pieces(session, experiment_id, metrics, plan.bounds, pieces, history)
    return history
