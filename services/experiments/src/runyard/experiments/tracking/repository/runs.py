"""Queries of training runs: the one-statement batch upsert, the best epoch, pages of epochs.

A batch is ONE statement: ``INSERT ... SELECT unnest(...)`` (one array parameter per column,
whatever the batch size) ``ON CONFLICT (experiment_id, epoch) DO UPDATE ... WHERE`` the values
differ. A retried request therefore inserts nothing twice and rewrites nothing; an epoch logged
again with other values (a re-run from a checkpoint) replaces the old ones.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Float,
    Integer,
    String,
    Table,
    Text,
    Uuid,
    bindparam,
    cast,
    exists,
    func,
    literal_column,
    select,
    tuple_,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, insert
from sqlalchemy.ext.asyncio import AsyncSession

from runyard.experiments.models import TrainingRun
from runyard.experiments.tracking.query_language.fields import jsonb_number
from runyard.shared.pagination import cut, decode_cursor

#: the metrics a training run has columns for; any other name lives in ``training_runs.metrics``
RUN_COLUMNS = ("train_loss", "val_loss", "train_accuracy", "val_accuracy", "learning_rate")
FLOAT_COLUMNS = (*RUN_COLUMNS, "duration_seconds")
VALUE_COLUMNS = (*FLOAT_COLUMNS, "checkpoint_path", "metrics")


def run_metric(metric: str) -> ColumnElement[float]:
    """A metric of a training run as SQL: its column, or the key of its other metrics."""
    if metric in RUN_COLUMNS:
        column: ColumnElement[float] = getattr(TrainingRun, metric)
        return column
    return jsonb_number(TrainingRun.metrics, metric)


def cast_table(table: Any) -> Table:
    """A model's ``__table__`` (typed as any ``FromClause``) as the ``Table`` it is."""
    assert isinstance(table, Table)
    return table


def _upsert_statement() -> Any:
    """Built once: every batch runs the same statement with new array parameters."""

    def column(name: str, type_: Any) -> Any:
        return func.unnest(bindparam(f"p_{name}", type_=ARRAY(type_)))

    source = select(
        bindparam("p_experiment_id", type_=Uuid).label("experiment_id"),
        column("epoch", Integer).label("epoch"),
        *(column(name, Float).label(name) for name in FLOAT_COLUMNS),
        column("checkpoint_path", String).label("checkpoint_path"),
        cast(column("metrics", Text), JSONB).label("metrics"),
    )
    # the Core table: an ORM insert given parameters would be an ORM bulk insert
    table = cast_table(TrainingRun.__table__)
    stmt = insert(table).from_select(["experiment_id", "epoch", *VALUE_COLUMNS], source)
    return stmt.on_conflict_do_update(
        index_elements=[table.c.experiment_id, table.c.epoch],
        set_={**{name: stmt.excluded[name] for name in VALUE_COLUMNS}, "updated_at": func.now()},
        where=tuple_(*(table.c[name] for name in VALUE_COLUMNS)).is_distinct_from(
            tuple_(*(stmt.excluded[name] for name in VALUE_COLUMNS))
        ),
    ).returning(table.c.epoch, literal_column("(xmax = 0)").label("inserted"))


UPSERT_RUNS = _upsert_statement()


def upsert_parameters(experiment_id: uuid.UUID, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One array per column (the statement's size never depends on the batch's)."""
    parameters: dict[str, Any] = {
        f"p_{name}": [r[name] for r in rows]
        for name in ("epoch", *FLOAT_COLUMNS, "checkpoint_path")
    }
    parameters["p_metrics"] = [json.dumps(r["metrics"], separators=(",", ":")) for r in rows]
    parameters["p_experiment_id"] = experiment_id
    return parameters


async def upsert_runs(
    session: AsyncSession, experiment_id: uuid.UUID, rows: Sequence[dict[str, Any]]
) -> list[tuple[int, bool]]:
    """(epoch, inserted) of every run written: new, or stored before with other values."""
    written = await session.execute(UPSERT_RUNS, upsert_parameters(experiment_id, rows))
    return [(epoch, bool(inserted)) for epoch, inserted in written]


async def best_run(
    session: AsyncSession, experiment_id: uuid.UUID, metric: str, mode: str
) -> tuple[int, float] | None:
    """(epoch, value) of the stored run best by ``metric`` (``mode`` max or min; the earliest
    epoch of a tie); None when no run has the metric."""
    value = run_metric(metric)
    order = value.desc() if mode == "max" else value.asc()
    row = (
        await session.execute(
            select(TrainingRun.epoch, value)
            .where(TrainingRun.experiment_id == experiment_id, value.is_not(None))
            .order_by(order, TrainingRun.epoch)
            .limit(1)
        )
    ).first()
    return None if row is None else (row[0], row[1])


async def has_runs(session: AsyncSession, experiment_id: uuid.UUID) -> bool:
    found = await session.scalar(select(exists().where(TrainingRun.experiment_id == experiment_id)))
    return bool(found)


def epoch_key(run: TrainingRun) -> tuple[int]:
    return (run.epoch,)


async def list_runs(
    session: AsyncSession, experiment_id: uuid.UUID, *, limit: int, cursor: str | None
) -> tuple[list[TrainingRun], str | None]:
    """Epochs in ascending order, keyset-paginated on the epoch."""
    query = select(TrainingRun).where(TrainingRun.experiment_id == experiment_id)
    after = decode_cursor(cursor, "runs", int)
    if after is not None:
        query = query.where(TrainingRun.epoch > after[0])
    rows = (await session.scalars(query.order_by(TrainingRun.epoch).limit(limit + 1))).all()
    return cut(rows, limit, "runs", epoch_key)
