"""Training runs: epochs logged one at a time or in batches, idempotent per (experiment, epoch).

A batch is ONE statement: ``INSERT ... SELECT unnest(...)`` (one array parameter per column,
whatever the batch size) ``ON CONFLICT (experiment_id, epoch) DO UPDATE ... WHERE`` the values
differ. A retried request therefore inserts nothing twice and rewrites nothing; an epoch logged
again with other values (a re-run from a checkpoint) replaces the old ones. The experiment's
total epochs, latest metrics and best epoch change in the same transaction, under the
experiment's row lock, so concurrent loggers of one experiment cannot lose an update.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    Float,
    Integer,
    String,
    Text,
    Uuid,
    bindparam,
    cast,
    func,
    literal_column,
    select,
    tuple_,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, insert
from sqlalchemy.ext.asyncio import AsyncSession

from runyard.experiments import bookkeeping, pagination, service
from runyard.experiments.models import TERMINAL, Experiment, TrainingRun
from runyard.experiments.schemas import RunBatchResult, RunIn
from runyard.shared.http import ProblemError
from runyard.shared.identity import Principal

FLOAT_COLUMNS = (
    "train_loss",
    "val_loss",
    "train_accuracy",
    "val_accuracy",
    "learning_rate",
    "duration_seconds",
)
VALUE_COLUMNS = (*FLOAT_COLUMNS, "checkpoint_path", "metrics")


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
    table = TrainingRun.__table__
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


async def log_runs(
    session: AsyncSession, *, principal: Principal, experiment_id: uuid.UUID, runs: list[RunIn]
) -> RunBatchResult:
    experiment = await service.get_writable_experiment(
        session, principal=principal, experiment_id=experiment_id
    )
    if experiment.status in TERMINAL:
        raise ProblemError(
            409,
            "Conflict",
            f"The experiment is {experiment.status}; it takes no more training runs.",
            current_status=experiment.status,
        )
    repeated = sorted(epoch for epoch, n in Counter(r.epoch for r in runs).items() if n > 1)
    if repeated:
        raise ProblemError(
            422,
            "Validation failed",
            f"Each epoch may appear once per request; repeated: {repeated[:20]}.",
            errors=[{"loc": ["body", "runs"], "msg": "repeated epochs", "type": "value_error"}],
        )
    if experiment.status == "pending":
        await service.start(session, experiment)

    rows = [run.model_dump() for run in runs]
    written = (await session.execute(UPSERT_RUNS, upsert_parameters(experiment.id, rows))).all()
    inserted = sum(1 for _epoch, is_new in written if is_new)
    overwritten = {epoch for epoch, is_new in written if not is_new}
    by_epoch = {row["epoch"]: row for row in rows}
    changed = sorted((by_epoch[epoch] for epoch, _ in written), key=lambda r: int(r["epoch"]))

    experiment.total_epochs += inserted
    if changed:
        latest = changed[-1]
        if experiment.last_epoch is None or latest["epoch"] >= experiment.last_epoch:
            experiment.last_epoch = latest["epoch"]
            experiment.metrics = {**experiment.metrics, **bookkeeping.metrics_of(latest)}
        if experiment.best_epoch is not None and experiment.best_epoch in overwritten:
            await session.flush()
            await bookkeeping.recompute_best(session, experiment)
        else:
            for row in changed:
                value = bookkeeping.metrics_of(row).get(experiment.best_metric)
                if value is not None and bookkeeping.better(
                    experiment.best_mode, value, experiment.best_value
                ):
                    experiment.best_epoch, experiment.best_value = row["epoch"], value
    await session.flush()
    return RunBatchResult(
        experiment_id=experiment.id,
        received=len(runs),
        inserted=inserted,
        updated=len(written) - inserted,
        unchanged=len(runs) - len(written),
        status=experiment.status,
        total_epochs=experiment.total_epochs,
        best_epoch=experiment.best_epoch,
        best_value=experiment.best_value,
        metrics=experiment.metrics,
    )


async def list_runs(
    session: AsyncSession,
    *,
    principal: Principal,
    experiment_id: uuid.UUID,
    limit: int,
    cursor: str | None,
) -> tuple[Sequence[TrainingRun], str | None]:
    """Epochs in ascending order, keyset-paginated on the epoch."""
    experiment: Experiment = await service.get_visible_experiment(
        session, principal=principal, experiment_id=experiment_id
    )
    after = pagination.decode_cursor(cursor, kind="runs")
    query = select(TrainingRun).where(TrainingRun.experiment_id == experiment.id)
    if after is not None:
        if not isinstance(after.get("e"), int):
            raise pagination.invalid_cursor()
        query = query.where(TrainingRun.epoch > after["e"])
    rows = (await session.scalars(query.order_by(TrainingRun.epoch).limit(limit + 1))).all()
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = pagination.encode_cursor({"k": "runs", "e": rows[-1].epoch})
    return rows, next_cursor
