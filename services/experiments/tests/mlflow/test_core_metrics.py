"""Metrics of MLflow runs: history by step, merging at one step, timestamps, latest values,
log-batch limits (a refused batch writes nothing), bulk-interval sampling."""

from __future__ import annotations

import asyncio
import json
import uuid

from services.experiments.tests.experiments_helpers import fetch


def metric(key: str, value: float, step: int, timestamp: int = 1_700_000_000_000) -> dict:
    return {"key": key, "value": value, "step": step, "timestamp": timestamp}


async def history(mlflow, who, run_id: str, key: str, **params) -> list[dict]:
    found = await mlflow.ok(
        who, "metrics/get-history", params={"run_id": run_id, "metric_key": key, **params}
    )
    return found.get("metrics", [])


async def test_metric_history_is_ordered_by_step_and_merges_at_one_step(mlflow, db, alice) -> None:
    run_id = (await mlflow.new_run(alice, "0"))["info"]["run_id"]
    for step, value, ts in ((2, 0.5, 30), (0, 0.9, 10), (1, 0.7, 20)):
        await mlflow.ok(
            alice, "runs/log-metric", {"run_id": run_id, **metric("loss", value, step, ts)}
        )
    # another metric at step 1, from another call: both stay
    await mlflow.ok(alice, "runs/log-metric", {"run_id": run_id, **metric("acc/top 1", 0.3, 1, 21)})
    await mlflow.ok(alice, "runs/log-metric", {"run_id": run_id, **metric("val_loss", 0.8, 1, 22)})
    assert await history(mlflow, alice, run_id, "loss") == [
        metric("loss", 0.9, 0, 10),
        metric("loss", 0.7, 1, 20),
        metric("loss", 0.5, 2, 30),
    ]
    assert await history(mlflow, alice, run_id, "acc/top 1") == [metric("acc/top 1", 0.3, 1, 21)]
    # a value logged again at a step is one more value (MLflow keeps them all, by timestamp);
    # Runyard's epoch 1 takes the latest
    await mlflow.ok(alice, "runs/log-metric", {"run_id": run_id, **metric("loss", 0.6, 1, 40)})
    assert (await history(mlflow, alice, run_id, "loss"))[1:] == [
        metric("loss", 0.7, 1, 20),
        metric("loss", 0.5, 2, 30),
        metric("loss", 0.6, 1, 40),
    ]
    assert await history(mlflow, alice, run_id, "val_loss") == [metric("val_loss", 0.8, 1, 22)]

    latest = {m["key"]: m for m in (await mlflow.get_run(alice, run_id))["data"]["metrics"]}
    assert latest == {
        "loss": metric("loss", 0.5, 2, 30),
        "acc/top 1": metric("acc/top 1", 0.3, 1, 21),
        "val_loss": metric("val_loss", 0.8, 1, 22),
    }
    rows = await fetch(
        db,
        "SELECT epoch, val_loss, metrics FROM experiments.training_runs "
        "WHERE experiment_id = $1 ORDER BY epoch",
        uuid.UUID(run_id),
    )
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    assert rows[1]["val_loss"] == 0.8
    assert json.loads(rows[1]["metrics"])["loss"] == 0.6

    paged = await history(mlflow, alice, run_id, "loss", max_results=2)
    assert [m["step"] for m in paged] == [0, 1]
    page = await mlflow.ok(
        alice,
        "metrics/get-history",
        params={"run_id": run_id, "metric_key": "loss", "max_results": 2},
    )
    rest = await history(
        mlflow, alice, run_id, "loss", max_results=2, page_token=page["next_page_token"]
    )
    assert [m["step"] for m in rest] == [2, 1]


async def test_log_batch_writes_everything_or_nothing(mlflow, db, alice) -> None:
    run_id = (await mlflow.new_run(alice, "0"))["info"]["run_id"]
    await mlflow.ok(
        alice,
        "runs/log-batch",
        {
            "run_id": run_id,
            "metrics": [metric("m", float(i), i, 100 + i) for i in range(5)],
            "params": [{"key": "p", "value": "1"}],
            "tags": [{"key": "t", "value": "x"}],
        },
    )

    async def state() -> list:
        return [
            tuple(r)
            for r in await fetch(
                db,
                "SELECT e.hyperparameters, e.kv_tags, e.version, count(t.id) "
                "FROM experiments.experiments e LEFT JOIN experiments.training_runs t "
                "ON t.experiment_id = e.id WHERE e.id = $1 GROUP BY e.id",
                uuid.UUID(run_id),
            )
        ]

    before = await state()
    refused = [
        # a param logged before with another value
        {"metrics": [metric("m", 1.0, 9)], "params": [{"key": "p", "value": "2"}]},
        # one key twice
        {"params": [{"key": "q", "value": "1"}, {"key": "q", "value": "1"}]},
        # too many metrics, params, tags, entities
        {"metrics": [metric("m", 1.0, i) for i in range(1001)]},
        {"params": [{"key": f"p{i}", "value": "1"} for i in range(101)]},
        {"tags": [{"key": f"t{i}", "value": "1"} for i in range(101)]},
        {
            "metrics": [metric("m", 1.0, i) for i in range(901)],
            "params": [{"key": f"p{i}", "value": "1"} for i in range(100)],
        },
        # lengths and names
        {"params": [{"key": "long", "value": "x" * 6001}]},
        {"tags": [{"key": "t", "value": "x" * 8001}]},
        {"metrics": [metric("k" * 251, 1.0, 0)]},
        {"metrics": [metric("bad$name", 1.0, 0)], "tags": [{"key": "t2", "value": "y"}]},
        {"metrics": [metric("m", 1.0, 0), {**metric("m", 1.0, 1), "value": "high"}]},
        {"metrics": [metric("m", 1.0, 2**63)]},
        {"metrics": [{"key": "m", "value": 1.0, "step": 0, "timestamp": -5}]},
    ]
    for body in refused:
        assert await mlflow.error(alice, "runs/log-batch", {"run_id": run_id, **body}) == (
            400,
            "INVALID_PARAMETER_VALUE",
        ), body
    assert await state() == before
    # the largest batch MLflow allows is fine
    await mlflow.ok(
        alice,
        "runs/log-batch",
        {
            "run_id": run_id,
            "metrics": [metric("big", 1.0, i) for i in range(900)],
            "params": [{"key": f"p{i}", "value": "1"} for i in range(50)],
            "tags": [{"key": f"t{i}", "value": "1"} for i in range(50)],
        },
    )
    assert len(await history(mlflow, alice, run_id, "big")) == 900


async def test_an_ended_run_takes_params_and_tags_but_no_metrics(mlflow, alice) -> None:
    run_id = (await mlflow.new_run(alice, "0"))["info"]["run_id"]
    await mlflow.ok(alice, "runs/update", {"run_id": run_id, "status": "FAILED"})
    assert await mlflow.error(
        alice, "runs/log-metric", {"run_id": run_id, **metric("m", 1.0, 0)}
    ) == (400, "INVALID_STATE")
    await mlflow.ok(alice, "runs/log-parameter", {"run_id": run_id, "key": "p", "value": "v"})
    await mlflow.ok(alice, "runs/set-tag", {"run_id": run_id, "key": "t", "value": "v"})


async def test_bulk_interval_samples_each_run_like_mlflow(mlflow, alice) -> None:
    first = (await mlflow.new_run(alice, "0"))["info"]["run_id"]
    second = (await mlflow.new_run(alice, "0"))["info"]["run_id"]
    await mlflow.ok(
        alice,
        "runs/log-batch",
        {"run_id": first, "metrics": [metric("loss", 1.0 / (i + 1), i, i) for i in range(100)]},
    )
    await mlflow.ok(
        alice,
        "runs/log-batch",
        {"run_id": second, "metrics": [metric("loss", 2.0, i, i) for i in range(0, 10, 3)]},
    )
    params = [("run_ids", first), ("run_ids", second), ("metric_key", "loss"), ("max_results", 10)]
    found = (await mlflow.ok(alice, "metrics/get-history-bulk-interval", params=params))["metrics"]
    by_run: dict[str, list[int]] = {}
    for point in found:
        by_run.setdefault(point["run_id"], []).append(point["step"])
    # NTILE(10) over 100 steps: the first of each bucket, the last step replacing the last one
    assert by_run[first] == [0, 10, 20, 30, 40, 50, 60, 70, 80, 99]
    assert by_run[second] == [0, 3, 6, 9]
    ranged = await mlflow.ok(
        alice,
        "metrics/get-history-bulk-interval",
        params=[("run_ids", first), ("metric_key", "loss"), ("start_step", 10), ("end_step", 14)],
    )
    assert [p["step"] for p in ranged["metrics"]] == [10, 11, 12, 13, 14]
    assert await mlflow.error(
        alice,
        "metrics/get-history-bulk-interval",
        params=[("run_ids", first), ("metric_key", "loss"), ("start_step", 3)],
    ) == (400, "INVALID_PARAMETER_VALUE")
    assert await mlflow.error(
        alice,
        "metrics/get-history-bulk-interval",
        params=[("run_ids", uuid.uuid4().hex), ("metric_key", "loss")],
    ) == (404, "RESOURCE_DOES_NOT_EXIST")
    bulk = await mlflow.ajax.ok(
        alice, "metrics/get-history-bulk", params=[("run_id", second), ("metric_key", "loss")]
    )
    assert [p["step"] for p in bulk["metrics"]] == [0, 3, 6, 9]


async def test_concurrent_calls_at_one_step_lose_no_metric(mlflow, alice) -> None:
    run_id = (await mlflow.new_run(alice, "0"))["info"]["run_id"]
    keys = [f"m{i}" for i in range(12)]
    responses = await asyncio.gather(
        *(
            mlflow.call(alice, "runs/log-metric", {"run_id": run_id, **metric(key, 1.0, 7)})
            for key in keys
        )
    )
    assert [r.status_code for r in responses] == [200] * len(keys)
    latest = (await mlflow.get_run(alice, run_id))["data"]["metrics"]
    assert sorted(m["key"] for m in latest) == sorted(keys)
    assert {m["step"] for m in latest} == {7}


async def test_nan_infinities_and_negative_steps_are_kept_in_the_metric_log(
    mlflow, db, alice
) -> None:
    run_id = (await mlflow.new_run(alice, "0"))["info"]["run_id"]
    for key, value, step in (
        ("nan_metric", "NaN", 0),
        ("inf_metric", "Infinity", 0),
        ("-inf_metric", "-Infinity", 0),
        ("loss", 1.5, -2),
        ("loss", 0.5, 3),
    ):
        body = {"run_id": run_id, "key": key, "value": value, "timestamp": 7, "step": step}
        await mlflow.ok(alice, "runs/log-metric", body)
    latest = {
        m["key"]: m["value"] for m in (await mlflow.get_run(alice, run_id))["data"]["metrics"]
    }
    assert latest == {
        "nan_metric": "NaN",
        "inf_metric": "Infinity",
        "-inf_metric": "-Infinity",
        "loss": 0.5,
    }
    assert [(m["step"], m["value"]) for m in await history(mlflow, alice, run_id, "loss")] == [
        (-2, 1.5),
        (3, 0.5),
    ]
    # Runyard's epochs hold the finite values of steps >= 0 only
    rows = await fetch(
        db,
        "SELECT epoch, metrics FROM experiments.training_runs WHERE experiment_id = $1",
        uuid.UUID(run_id),
    )
    assert [(r["epoch"], json.loads(r["metrics"])) for r in rows] == [(3, {"loss": 0.5})]
