"""The run's summaries the SQL path leaves owed (migration 0022, ``epoch_events.fold``): the
worker folds them before each event, every other writer of the run folds them first, and an
MLflow search by metrics sees them at once. The tests' apps run no workers, so what is owed
stays owed until a test folds it or a request does."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from runyard.experiments.tracking.service import liveness
from runyard.shared.testing import ServiceDatabase
from services.experiments.tests.experiments_helpers import (
    Caller,
    expected_blocks,
    fetch,
    in_session,
    outbox,
    stored_blocks,
)
from services.experiments.tests.mlflow.conftest import Mlflow

T0 = 1_700_000_000_000


def batch(run_id: str, step: int, **metrics: float) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "metrics": [
            {"key": k, "value": v, "timestamp": T0 + step, "step": step} for k, v in metrics.items()
        ],
    }


async def running_run(mlflow: Mlflow, who: Caller) -> str:
    """A run (running from its creation, as MLflow's are) with its first epoch, all of whose
    epochs take the SQL path."""
    experiment = await mlflow.new_experiment(who)
    run_id: str = (await mlflow.new_run(who, experiment))["info"]["run_id"]
    await mlflow.ok(who, "runs/log-batch", batch(run_id, 0, val_loss=1.0, acc=0.1))
    return run_id


async def run_row(db: ServiceDatabase, run_id: str) -> tuple[Any, ...]:
    rows = await fetch(
        db,
        "SELECT total_epochs, last_epoch, metrics::text, best_epoch, best_value"
        " FROM experiments.experiments WHERE id = $1",
        uuid.UUID(run_id),
    )
    return tuple(rows[0])


async def owed(db: ServiceDatabase, run_id: str) -> bool:
    rows = await fetch(
        db,
        "SELECT fold_blocks IS NOT NULL AS owed FROM experiments.pending_epochs"
        " WHERE experiment_id = $1",
        uuid.UUID(run_id),
    )
    return bool(rows and rows[0]["owed"])


async def test_the_worker_folds_the_summaries_before_the_event(
    mlflow: Mlflow, alice: Caller, db: ServiceDatabase
) -> None:
    run_id = await running_run(mlflow, alice)
    for step in range(1, 40):
        await mlflow.ok(alice, "runs/log-batch", batch(run_id, step, val_loss=1 / (step + 1)))
    # written by the SQL path: the epochs are there, the run's row does not count them yet
    assert await owed(db, run_id)
    assert (await run_row(db, run_id))[:2] == (0, None)
    assert len(await fetch(db, "SELECT 1 FROM experiments.training_runs")) == 40

    events = [e for e in await outbox(db) if e["type"] == "experiment.epochs_logged"]

    assert not await owed(db, run_id)
    total, last, metrics, best_epoch, best_value = await run_row(db, run_id)
    assert (total, last, best_epoch, best_value) == (40, 39, 39, 1 / 40)
    assert '"val_loss": 0.025' in metrics and '"acc": 0.1' in metrics
    assert await stored_blocks(db, run_id) == await expected_blocks(db, run_id)
    # the window's event carries the totals and best as folded
    assert events[-1]["data"]["total_epochs"] == 40
    assert events[-1]["data"]["best_epoch"] == 39


async def test_a_python_path_write_folds_first(
    mlflow: Mlflow, alice: Caller, db: ServiceDatabase
) -> None:
    """The SQL path's best candidate (0.5 at step 1) is owed when the Python path logs a
    better one (0.3 at step 2, with a param): folded first, the better one stays the best."""
    run_id = await running_run(mlflow, alice)
    await mlflow.ok(alice, "runs/log-batch", batch(run_id, 1, val_loss=0.5))
    assert await owed(db, run_id)
    body = batch(run_id, 2, val_loss=0.3) | {"params": [{"key": "lr", "value": "0.1"}]}
    await mlflow.ok(alice, "runs/log-batch", body)

    assert not await owed(db, run_id)
    total, last, _metrics, best_epoch, best_value = await run_row(db, run_id)
    assert (total, last, best_epoch, best_value) == (3, 2, 2, 0.3)
    assert await stored_blocks(db, run_id) == await expected_blocks(db, run_id)


async def test_a_search_by_metrics_sees_what_is_owed(
    mlflow: Mlflow, alice: Caller, db: ServiceDatabase
) -> None:
    run_id = await running_run(mlflow, alice)
    await mlflow.ok(alice, "runs/log-batch", batch(run_id, 1, val_loss=0.2))
    assert await owed(db, run_id)
    experiment_id = (await mlflow.get_run(alice, run_id))["info"]["experiment_id"]

    found = await mlflow.ok(
        alice,
        "runs/search",
        {"experiment_ids": [experiment_id], "filter": "metrics.val_loss < 0.5"},
    )

    assert [r["info"]["run_id"] for r in found["runs"]] == [run_id]
    assert not await owed(db, run_id)


async def test_an_owed_epoch_is_a_sign_of_life(
    mlflow: Mlflow, alice: Caller, db: ServiceDatabase
) -> None:
    """The stall sweeper reads the owed epochs' time over the run's last sign of life."""
    run_id = await running_run(mlflow, alice)
    await mlflow.ok(alice, "runs/log-batch", batch(run_id, 1, val_loss=0.2))
    long_ago = datetime.now(UTC) - timedelta(hours=2)
    await fetch(
        db,
        "UPDATE experiments.experiments SET last_seen_at = $2, started_at = $2 WHERE id = $1",
        uuid.UUID(run_id),
        long_ago,
    )

    def sweep(session: Any) -> Any:
        return liveness.mark_stalled(session, now=datetime.now(UTC), default_after_s=600)

    assert await in_session(db, sweep) == 0
    # once the owed epoch is as old as the rest, the run is silent
    await fetch(
        db,
        "UPDATE experiments.pending_epochs SET fold_seen_at = $2 WHERE experiment_id = $1",
        uuid.UUID(run_id),
        long_ago,
    )
    assert await in_session(db, sweep) == 1
    assert not await owed(db, run_id)  # folded before the run was marked
