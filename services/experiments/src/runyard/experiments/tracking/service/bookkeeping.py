"""The experiment's summary of its training runs: best epoch and value, latest metrics."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from runyard.experiments.models import Experiment
from runyard.experiments.tracking.repository import runs as repository
from runyard.experiments.tracking.repository.runs import RUN_COLUMNS


def metrics_of(run: dict[str, Any]) -> dict[str, float]:
    """An epoch's metrics as one flat object (the column metrics and the extra ones)."""
    found = {k: run[k] for k in RUN_COLUMNS if run.get(k) is not None}
    return {**found, **(run.get("metrics") or {})}


def better(mode: str, candidate: float, current: float | None) -> bool:
    """Whether ``candidate`` beats ``current`` (None: nothing yet) when ``mode`` is max or min."""
    if current is None:
        return True
    return candidate > current if mode == "max" else candidate < current


async def recompute_best(session: AsyncSession, experiment: Experiment) -> None:
    """Best epoch and value from all stored runs (after the metric changed, or the best run was
    overwritten). An experiment without runs keeps what its completion said."""
    best = await repository.best_run(
        session, experiment.id, experiment.best_metric, experiment.best_mode
    )
    if best is not None:
        experiment.best_epoch, experiment.best_value = best
    elif await repository.has_runs(session, experiment.id):
        experiment.best_epoch, experiment.best_value = None, None
