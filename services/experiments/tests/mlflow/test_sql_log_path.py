"""The SQL path of MLflow's metric logging (``mlflow/sql_log.py``, one database function call
per request) leaves the same rows as the Python path: the same requests go to one run through a
service with the SQL path and to another through a service without it (same database), and every
row either path writes is compared. Where the SQL path must take the request, the Python path is
made to fail, so a request it handed over would show."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from runyard.experiments.config import Settings
from runyard.experiments.main import create_app
from runyard.experiments.mlflow import service_runs
from runyard.shared.testing import ServiceDatabase, running_app
from services.experiments.tests.experiments_helpers import (
    Caller,
    expected_blocks,
    fetch,
    fold_summaries,
    stored_blocks,
)
from services.experiments.tests.mlflow.conftest import Mlflow

T0 = 1_700_000_000_000


@pytest.fixture
async def python_path(settings: Settings) -> AsyncIterator[Mlflow]:
    """The MLflow API of a second service on the same database, without the SQL path."""
    app = create_app(settings.model_copy(update={"mlflow_sql_log_path": False}))
    async with running_app(app) as client:
        yield Mlflow(client)


def batch(run_id: str, *points: tuple[str, float, int, int]) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "metrics": [{"key": k, "value": v, "timestamp": t, "step": s} for k, v, t, s in points],
    }


#: (path, body without the run id, whether the SQL path takes it on a run that has logged before)
STEPS: list[tuple[str, list[tuple[str, float, int, int]], bool]] = [
    # a pending run starts: the Python path
    (
        "log-batch",
        [("train_loss", 0.9, T0, 0), ("val_loss", 1.0, T0, 0), ("acc", 0.1, T0, 0)],
        False,
    ),
    # several epochs; a value logged twice at one step (latest timestamp wins; on a tie, the later)
    (
        "log-batch",
        [
            ("train_loss", 0.8, T0 + 1, 1),
            ("val_loss", 0.7, T0 + 1, 1),
            ("val_loss", 0.75, T0 + 2, 1),
            ("acc", 0.2, T0 + 1, 1),
            ("acc", 0.25, T0 + 1, 1),
            ("val_loss", 0.6, T0 + 3, 2),
            ("learning_rate", 0.01, T0 + 3, 2),
            ("val_accuracy", 0.5, T0 + 3, 3),
            ("train_accuracy", 0.4, T0 + 3, 3),
            ("f1", 0.3, T0 + 3, 3),
        ],
        True,
    ),
    # one metric of one epoch; the best epoch moves (val_loss, min)
    ("log-metric", [("val_loss", 0.5, T0 + 4, 4)], True),
    # integral, tiny, huge and negative-zero values
    (
        "log-batch",
        [
            ("acc", 3.0, T0 + 5, 5),
            ("tiny", 1e-7, T0 + 5, 5),
            ("huge", 1e20, T0 + 5, 5),
            ("zero", -0.0, T0 + 5, 5),
            ("val_loss", 0.5, T0 + 5, 5),
        ],
        True,
    ),
    # a later epoch, then an earlier one: the run keeps the later one's metrics
    ("log-batch", [("acc", 0.7, T0 + 6, 7), ("val_loss", 0.45, T0 + 6, 7)], True),
    ("log-batch", [("acc", 0.6, T0 + 7, 6), ("val_loss", 0.4, T0 + 7, 6)], True),
    # an epoch logged before, with another value: the Python path
    ("log-batch", [("acc", 0.65, T0 + 8, 6)], False),
    # metrics of one step in separate calls (MLflow's log_metric loop): the second adds its
    # metric to the epoch the first logged
    ("log-metric", [("acc", 0.8, T0 + 9, 8)], True),
    ("log-metric", [("val_loss", 0.41, T0 + 9, 8)], True),
    # epochs across history blocks (16, 64 epochs), logged out of order within the batch
    (
        "log-batch",
        [("val_loss", 1.0 / (e + 1), T0 + 10 + e, e) for e in (70, 15, 16, 17, 63, 64, 31)],
        True,
    ),
    # metrics new to logged epochs (a column one, one of ``metrics``) beside a new epoch
    (
        "log-batch",
        [("train_loss", 0.33, T0 + 50, 64), ("f1", 0.25, T0 + 50, 63), ("f1", 0.2, T0 + 50, 65)],
        True,
    ),
    # a metric new to an epoch of the old tail block while a new epoch moves the tail up, and
    # a new best epoch (val_loss, min)
    (
        "log-batch",
        [("train_accuracy", 0.9, T0 + 60, 15), ("val_loss", 0.01, T0 + 60, 90)],
        True,
    ),
    # a metric new to the run's best epoch: the best stays
    ("log-metric", [("f1", 0.7, T0 + 70, 90)], True),
    # a value only MLflow's metric log holds (NaN): the Python path
    ("log-batch", [("val_loss", "NaN", T0 + 100, 100)], False),  # type: ignore[list-item]
]


async def _rows(db: ServiceDatabase, run_id: str) -> dict[str, Any]:
    run = uuid.UUID(run_id)

    async def rows(query: str) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in await fetch(db, query, run)]

    return {
        "experiment": await rows(
            "SELECT status, total_epochs, last_epoch, metrics::text, best_epoch, best_value,"
            " last_seen_at IS NOT NULL, stalled_at FROM experiments.experiments WHERE id = $1"
        ),
        "epochs": await rows(
            "SELECT epoch, train_loss, val_loss, train_accuracy, val_accuracy, learning_rate,"
            " duration_seconds, checkpoint_path, metrics::text FROM experiments.training_runs"
            " WHERE experiment_id = $1 ORDER BY epoch"
        ),
        "history": await rows(
            "SELECT metric, level, block, n, min, max, last_epoch, last_value"
            " FROM experiments.history_blocks WHERE experiment_id = $1"
            " ORDER BY metric, level, block"
        ),
        "log": await rows(
            "SELECT key, step, timestamp, value::text FROM experiments.mlflow_metrics"
            " WHERE experiment_id = $1 ORDER BY key, step, timestamp, value"
        ),
        "latest": await rows(
            "SELECT key, step, timestamp, value::text FROM experiments.mlflow_latest_metrics"
            " WHERE experiment_id = $1 ORDER BY key"
        ),
        "pending": await rows(
            "SELECT first_epoch, last_epoch, epochs_written, epochs_inserted,"
            " latest_metrics::text FROM experiments.pending_epochs WHERE experiment_id = $1"
        ),
    }


async def _python_path_fails(*_args: Any, **_kwargs: Any) -> None:
    raise AssertionError("the SQL path handed this request to the Python path")


async def test_both_paths_leave_the_same_rows(
    mlflow: Mlflow,
    python_path: Mlflow,
    alice: Caller,
    db: ServiceDatabase,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    experiment = await mlflow.new_experiment(alice)
    sql_run = (await mlflow.new_run(alice, experiment))["info"]["run_id"]
    python_run = (await python_path.new_run(alice, experiment))["info"]["run_id"]

    for path, points, sql_takes_it in STEPS:
        for api, run_id in ((mlflow, sql_run), (python_path, python_run)):
            body = batch(run_id, *points)
            if path == "log-metric":
                body = {"run_id": run_id, **body["metrics"][0]}
            with monkeypatch.context() as patch:
                if api is mlflow and sql_takes_it:
                    patch.setattr(service_runs, "log_batch", _python_path_fails)
                await api.ok(alice, f"runs/{path}", body)

    # the run's summaries, as the epoch-events worker writes them once the window is over
    assert await fold_summaries(db) == 1
    sql_rows, python_rows = await _rows(db, sql_run), await _rows(db, python_run)
    for table in sql_rows:
        assert sql_rows[table] == python_rows[table], table
    # the history summary as computed from the runs (levels 1-3 without the tail block, which
    # the SQL path moved from block 0 to block 4, then to block 5)
    assert await stored_blocks(db, sql_run) == await expected_blocks(db, sql_run)
    # what the two paths wrote, as the API reads it back
    assert sql_rows["experiment"][0][:3] == ("running", 18, 90)
    read = await mlflow.ok(alice, "runs/get", params={"run_id": sql_run})
    assert {m["key"]: m["value"] for m in read["run"]["data"]["metrics"]}["acc"] == 0.8


async def test_requests_the_sql_path_leaves_change_nothing_there(
    mlflow: Mlflow, alice: Caller, bob: Caller, admin: Caller, viewer: Caller
) -> None:
    """Another user's run, a viewer, a finished or deleted run: the Python path's answers."""
    experiment = await mlflow.new_experiment(alice)
    run_id = (await mlflow.new_run(alice, experiment))["info"]["run_id"]
    await mlflow.ok(alice, "runs/log-batch", batch(run_id, ("acc", 0.1, T0, 0)))

    assert await mlflow.error(bob, "runs/log-batch", batch(run_id, ("acc", 0.2, T0, 1))) == (
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )
    assert (await mlflow.error(viewer, "runs/log-batch", batch(run_id, ("acc", 0.2, T0, 1))))[
        0
    ] == 403
    await mlflow.ok(admin, "runs/log-batch", batch(run_id, ("acc", 0.3, T0, 2)))
    await mlflow.ok(alice, "runs/update", {"run_id": run_id, "status": "FINISHED"})
    assert await mlflow.error(alice, "runs/log-batch", batch(run_id, ("acc", 0.4, T0, 3))) == (
        400,
        "INVALID_STATE",
    )
    history = await mlflow.ok(
        alice, "metrics/get-history", params={"run_id": run_id, "metric_key": "acc"}
    )
    assert [(m["step"], m["value"]) for m in history["metrics"]] == [(0, 0.1), (2, 0.3)]
