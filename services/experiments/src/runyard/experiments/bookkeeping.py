"""The experiment's summary of its training runs: best epoch and value, latest metrics."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from runyard.experiments.models import Experiment, TrainingRun
from runyard.experiments.query_language import jsonb_number

#: the metrics a training run has columns for; any other name lives in ``training_runs.metrics``
RUN_COLUMNS = ("train_loss", "val_loss", "train_accuracy", "val_accuracy", "learning_rate")


def run_metric(metric: str) -> ColumnElement[float]:
    if metric in RUN_COLUMNS:
        column: ColumnElement[float] = getattr(TrainingRun, metric)
        return column
    return jsonb_number(TrainingRun.metrics, metric)


def metrics_of(run: dict[str, Any]) -> dict[str, float]:
    """An epoch's metrics as one flat object (the column metrics and the extra ones)."""
    found = {k: run[k] for k in RUN_COLUMNS if run.get(k) is not None}
    return {**found, **(run.get("metrics") or {})}


def better(mode: str, candidate: float, current: float | None) -> bool:
    if current is None:
        return True
    return candidate > current if mode == "max" else candidate < current


async def recompute_best(session: AsyncSession, experiment: Experiment) -> None:
    """Best epoch and value from all stored runs (after the metric changed, or the best run was
    overwritten). An experiment without runs keeps what its completion said."""
    value = run_metric(experiment.best_metric)
    order = value.desc() if experiment.best_mode == "max" else value.asc()
    row = (
        await session.execute(
            select(TrainingRun.epoch, value)
            .where(TrainingRun.experiment_id == experiment.id, value.is_not(None))
            .order_by(order, TrainingRun.epoch)
            .limit(1)
        )
    ).first()
    if row is not None:
        experiment.best_epoch, experiment.best_value = row[0], row[1]
        return
    has_runs = await session.scalar(
        select(exists().where(TrainingRun.experiment_id == experiment.id))
    )
    if has_runs:
        experiment.best_epoch, experiment.best_value = None, None
