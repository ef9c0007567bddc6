"""The statements of a ``log-batch`` (and of reading a run back) are built once: SQLAlchemy
computes a statement's cache key once per statement object, and for the row lock and the metric
log's write with its read that walk cost more per request than the rest of their Python side.
A statement built per request again shows here as a cache key computed again. (The service here
runs without the SQL path, ``mlflow/sql_log.py``, which would take these requests whole.)"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.sql.cache_key import HasCacheKey

from runyard.experiments.config import Settings
from services.experiments.tests.experiments_helpers import Caller
from services.experiments.tests.mlflow.conftest import Mlflow

METRICS = ("train_loss", "val_loss", "train_accuracy", "val_accuracy")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"mlflow_sql_log_path": False})


def epoch(run_id: str, step: int) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "metrics": [
            {
                "key": key,
                "value": 0.5 + step / 100,
                "timestamp": 1_700_000_000_000 + step,
                "step": step,
            }
            for key in METRICS
        ],
    }


async def test_a_log_batch_and_a_run_read_compute_no_cache_key(
    mlflow: Mlflow, alice: Caller, monkeypatch: pytest.MonkeyPatch
) -> None:
    experiment_id = await mlflow.new_experiment(alice)
    run_id = (await mlflow.new_run(alice, experiment_id))["info"]["run_id"]
    # the first request of each kind builds what the process keeps
    await mlflow.ok(alice, "runs/log-batch", epoch(run_id, 0))
    await mlflow.ok(alice, "runs/get", params={"run_id": run_id})

    computed: list[str] = []
    original = HasCacheKey._generate_cache_key

    def counting(self: Any) -> Any:
        computed.append(type(self).__name__)
        return original(self)

    monkeypatch.setattr(HasCacheKey, "_generate_cache_key", counting)
    await mlflow.ok(alice, "runs/log-batch", epoch(run_id, 1))
    found = await mlflow.ok(alice, "runs/get", params={"run_id": run_id})
    monkeypatch.undo()

    assert {m["key"]: m["step"] for m in found["run"]["data"]["metrics"]} == dict.fromkeys(
        METRICS, 1
    )
    assert computed == []
