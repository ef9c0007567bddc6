"""MLflow's request checks and their texts: what MLflow's own REST suite and clients match
(``Invalid value 31 for parameter 'run_id' supplied``, ``Missing value for required parameter
'key'``), the UI's bulk history cap and MLflow's ``Invalid path``."""

from __future__ import annotations

from typing import Any

import pytest

from services.experiments.tests.experiments_helpers import Caller
from services.experiments.tests.mlflow.conftest import Mlflow

HINT = " See the API docs for more information about request parameters."


async def refused(mlflow: Mlflow, who: Caller, path: str, body: dict[str, Any]) -> str:
    response = await mlflow.call(who, path, body)
    assert response.status_code == 400, response.text
    payload = response.json()
    assert payload["error_code"] == "INVALID_PARAMETER_VALUE", payload
    message: str = payload["message"]
    return message


async def test_log_metric_names_the_first_bad_field_as_mlflow_does(
    mlflow: Mlflow, alice: Caller
) -> None:
    run_id = (await mlflow.new_run(alice))["info"]["run_id"]
    good = {"run_id": run_id, "key": "loss", "value": 0.5, "timestamp": 59, "step": 1}
    cases = [
        (
            {**good, "run_id": 31, "value": 41},
            "Invalid value 31 for parameter 'run_id' supplied:  Hint: Value was of type 'int'.",
        ),
        (
            {**good, "key": 31},
            "Invalid value 31 for parameter 'key' supplied:  Hint: Value was of type 'int'.",
        ),
        ({**good, "step": "foo"}, "Invalid value \"foo\" for parameter 'step' supplied"),
        ({**good, "timestamp": "foo"}, "Invalid value \"foo\" for parameter 'timestamp' supplied"),
        ({**good, "run_id": None}, "Missing value for required parameter 'run_id'."),
        (
            {k: v for k, v in good.items() if k != "key"},
            "Missing value for required parameter 'key'",
        ),
        ({**good, "key": None}, "Missing value for required parameter 'key'."),
        ({**good, "key": ""}, "Missing value for required parameter 'key'."),
        ({**good, "timestamp": None}, "Missing value for required parameter 'timestamp'."),
    ]
    for body, expected in cases:
        message = await refused(mlflow, alice, "runs/log-metric", body)
        assert expected in message, (body, message)
        assert message.endswith(HINT)
    # nothing of the refused requests was written
    run = await mlflow.get_run(alice, run_id)
    assert not run["data"].get("metrics")
    # the same values as strings are integer- and float-like: accepted
    await mlflow.ok(alice, "runs/log-metric", {**good, "value": "41", "step": "2"})


async def test_params_tags_and_experiments_are_checked_before_anything(
    mlflow: Mlflow, alice: Caller
) -> None:
    run_id = (await mlflow.new_run(alice))["info"]["run_id"]
    for path in ("runs/log-parameter", "runs/set-tag"):
        message = await refused(mlflow, alice, path, {"run_id": 31, "key": "k", "value": 41})
        assert "Invalid value 31 for parameter 'run_id' supplied" in message
        message = await refused(mlflow, alice, path, {"run_id": run_id, "key": 31, "value": "v"})
        assert "Invalid value 31 for parameter 'key' supplied" in message
        message = await refused(mlflow, alice, path, {"run_id": run_id, "key": "k", "value": 41})
        assert "Invalid value 41 for parameter 'value' supplied" in message
        message = await refused(mlflow, alice, path, {"run_id": run_id, "value": "v"})
        assert "Missing value for required parameter 'key'" in message
    # the old spelling of the run id still names the run
    await mlflow.ok(alice, "runs/set-tag", {"run_uuid": run_id, "key": "k", "value": "v"})
    assert {"key": "k", "value": "v"} in (await mlflow.get_run(alice, run_id))["data"]["tags"]

    message = await refused(mlflow, alice, "experiments/create", {"name": 123})
    assert "Invalid value 123 for parameter 'name'" in message
    message = await refused(mlflow, alice, "experiments/create", {})
    assert "Missing value for required parameter 'name'" in message
    message = await refused(
        mlflow, alice, "experiments/create", {"name": "n", "artifact_location": 9.0}
    )
    assert "Invalid value 9.0 for parameter 'artifact_location'" in message
    message = await refused(mlflow, alice, "experiments/create", {"name": "n", "tags": "5"})
    assert "Invalid value \"5\" for parameter 'tags'" in message


async def test_log_batch_names_the_field_and_the_entry(mlflow: Mlflow, alice: Caller) -> None:
    run_id = (await mlflow.new_run(alice))["info"]["run_id"]
    for field in ("metrics", "params", "tags"):
        message = await refused(mlflow, alice, "runs/log-batch", {"run_id": run_id, field: "foo"})
        assert f"Invalid value \"foo\" for parameter '{field}' supplied" in message
    message = await refused(
        mlflow,
        alice,
        "runs/log-batch",
        {"run_id": run_id, "metrics": [{"key": "mae", "value": 2.5}]},
    )
    assert "Missing value for required parameter 'metrics[0].timestamp'." in message
    message = await refused(
        mlflow, alice, "runs/log-batch", {"run_id": run_id, "params": [{"value": "v"}]}
    )
    assert "Missing value for required parameter 'params[0].key'." in message
    # a timestamp without a step is enough
    await mlflow.ok(
        alice,
        "runs/log-batch",
        {"run_id": run_id, "metrics": [{"key": "mae", "value": 2.5, "timestamp": 123456789}]},
    )


async def test_search_runs_max_results_is_capped_in_mlflows_words(
    mlflow: Mlflow, alice: Caller
) -> None:
    message = await refused(
        mlflow, alice, "runs/search", {"experiment_ids": ["0"], "max_results": 123456789}
    )
    assert "Invalid value 123456789 for parameter 'max_results' supplied" in message
    # an enum by name is not type-checked (MLflow's proto parsing takes it)
    await mlflow.ok(alice, "experiments/search", {"view_type": "ACTIVE_ONLY", "max_results": 5})


async def test_bulk_history_keeps_at_most_max_results_values(mlflow: Mlflow, alice: Caller) -> None:
    run_id = (await mlflow.new_run(alice))["info"]["run_id"]
    logged = [(1, 2, 10.0), (1, 3, 11.0), (1, 3, 12.0), (2, 3, 12.0)]
    for timestamp, step, value in logged:
        await mlflow.ok(
            alice,
            "runs/log-metric",
            {"run_id": run_id, "key": "m", "value": value, "timestamp": timestamp, "step": step},
        )
    params: dict[str, Any] = {"run_id": [run_id], "metric_key": "m"}
    every = (await mlflow.ajax.ok(alice, "metrics/get-history-bulk", params=params))["metrics"]
    assert [(m["timestamp"], m["step"], m["value"]) for m in every] == logged
    two = await mlflow.ajax.ok(
        alice, "metrics/get-history-bulk", params={**params, "max_results": 2}
    )
    assert two["metrics"] == every[:2]


@pytest.mark.parametrize("path", ["../path", "a/../../b", "/etc", "a/%2E%2E/b", "x#y"])
async def test_an_unsafe_artifact_path_is_mlflows_invalid_path(
    mlflow: Mlflow, alice: Caller, path: str
) -> None:
    run_id = (await mlflow.new_run(alice))["info"]["run_id"]
    for run in (run_id, "0" * 32):  # checked before the run is looked up, as MLflow does
        response = await mlflow.call(alice, "artifacts/list", params={"run_id": run, "path": path})
        assert (response.status_code, response.json()) == (
            400,
            {"error_code": "INVALID_PARAMETER_VALUE", "message": "Invalid path"},
        )


async def test_a_page_holding_only_the_default_experiment_is_the_last(
    mlflow: Mlflow, alice: Caller
) -> None:
    alone = await mlflow.ok(alice, "experiments/search", {"max_results": 1})
    assert [e["name"] for e in alone["experiments"]] == ["Default"]
    assert "next_page_token" not in alone
    experiment_id = await mlflow.new_experiment(alice, "only")
    first = await mlflow.ok(alice, "experiments/search", {"max_results": 1})
    assert [e["name"] for e in first["experiments"]] == ["only"]  # the newest first
    second = await mlflow.ok(
        alice, "experiments/search", {"max_results": 1, "page_token": first["next_page_token"]}
    )
    assert [e["name"] for e in second["experiments"]] == ["Default"]
    assert "next_page_token" not in second
    await mlflow.ok(alice, "experiments/delete", {"experiment_id": experiment_id})
    # the deleted project is on no page of active experiments
    again = await mlflow.ok(alice, "experiments/search", {"max_results": 1})
    assert [e["name"] for e in again["experiments"]] == ["Default"]
    assert "next_page_token" not in again


async def test_an_endpoint_not_served_is_mlflows_endpoint_not_found(
    client: Any, mlflow: Mlflow, alice: Caller
) -> None:
    """Unknown endpoints and methods under MLflow's prefixes answer in MLflow's shape, as the
    gateway answers the MLflow paths no service serves; Runyard's own paths keep problem+json."""
    for prefix in ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow", "/api/2.0/mlflow-artifacts"):
        for method in ("GET", "POST"):
            response = await client.request(
                method, f"{prefix}/runs/create-promptlab-run", headers=alice.headers
            )
            assert response.status_code == 404, (prefix, method)
            assert response.json() == {
                "error_code": "ENDPOINT_NOT_FOUND",
                "message": "No such MLflow endpoint.",
            }
    wrong_method = await client.delete("/api/2.0/mlflow/runs/create", headers=alice.headers)
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error_code"] == "ENDPOINT_NOT_FOUND"
    assert "allow" in wrong_method.headers
    assert await mlflow.error(alice, "runs/get", params={"run_id": "0" * 32}) == (
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )
    own = await client.get("/api/v1/no-such-thing", headers=alice.headers)
    assert own.status_code == 404
    assert own.headers["content-type"].startswith("application/problem+json")
