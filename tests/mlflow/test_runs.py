"""MLflow runs (Runyard experiments) through the stock ``MlflowClient``: lifecycle, params,
metrics and their history, tags, log_batch and its limits, dataset inputs, errors; search_runs
with MLflow's filter grammar, order and pages; the UI's bulk-interval metric history. Runyard's
own API shows the runs, their epochs and params."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from .conftest import MlflowScripts
from .helpers import Account, dashed, unique

pytestmark = pytest.mark.mlflow


def epochs_on_server(runyard: httpx.Client, experiment_id: str) -> dict[int, dict[str, Any]]:
    """Epoch -> every value Runyard holds for it (columns and ``metrics``)."""
    epochs: dict[int, dict[str, Any]] = {}
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 500, **({"cursor": cursor} if cursor else {})}
        page = runyard.get(f"/experiments/{experiment_id}/runs", params=params)
        assert page.status_code == 200, page.text
        for run in page.json()["items"]:
            columns = ("train_loss", "val_loss", "train_accuracy", "val_accuracy", "learning_rate")
            values = {k: run[k] for k in columns if run.get(k) is not None}
            epochs[run["epoch"]] = {**values, **(run.get("metrics") or {})}
        cursor = page.json()["next_cursor"]
        if not cursor:
            return epochs


def test_a_run_from_create_to_finish(
    mlflow: MlflowScripts, account: Account, runyard: httpx.Client
) -> None:
    seen = mlflow.run("runs", account.with_api_key, prefix=unique("runs"))
    experiment_id = seen["experiment_id"]
    created = seen["created"]
    run_id = created["run_id"]
    assert len(run_id) == 32 and int(run_id, 16) >= 0
    assert created["experiment_id"] == experiment_id
    assert created["run_name"] == "first-run"
    assert created["status"] == "RUNNING"
    assert created["lifecycle_stage"] == "active"
    assert created["artifact_uri"] == f"mlflow-artifacts:/{experiment_id}/{run_id}/artifacts"
    assert created["tags"]["team"] == "a"
    assert created["tags"]["mlflow.runName"] == "first-run"
    assert seen["got"]["run_id"] == run_id
    assert seen["got"]["start_time"] == created["start_time"]

    assert seen["param_changed"]["error_code"] == "INVALID_PARAMETER_VALUE"
    assert seen["loss_history"] == [
        {"step": s, "value": 1.0 / (s + 1), "timestamp": created["start_time"] + s * 1000}
        for s in range(5)
    ]
    assert seen["no_history"] == []
    assert seen["delete_missing_tag"]["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    assert seen["many_count"] == 1001
    assert seen["batch_over_limit"]["error_code"] == "INVALID_PARAMETER_VALUE"
    assert seen["too_many_history"] == 0
    assert seen["params_over_limit"]["error_code"] == "INVALID_PARAMETER_VALUE"
    assert seen["batch_param_changed"]["error_code"] == "INVALID_PARAMETER_VALUE"
    assert seen["refused_with_batch_history"] == 0

    before = seen["before_end"]
    assert before["params"] == {"lr": "0.01", "layers": "3", "optimizer": "adam"}
    assert before["metrics"] == {"loss": 0.2, "lr_now": 0.5, "acc": 0.7, "many": 1000.0}
    tags = {k: v for k, v in before["tags"].items() if k != "mlflow.runName"}
    assert tags == {"mlflow.note.content": "first", "stage": "prod", "batch": "yes"}
    datasets = {d["name"]: d for d in before["datasets"]}
    assert sorted(datasets) == ["features", "pumps"]  # the second log of "pumps" is kept once
    assert datasets["pumps"]["digest"] == seen["digests"]["pumps"]
    assert datasets["pumps"]["source_type"] == "http"
    assert datasets["pumps"]["tags"] == {"mlflow.data.context": "training"}
    assert "mlflow_colspec" in datasets["pumps"]["schema"]
    assert datasets["features"]["digest"] == seen["digests"]["features"]
    assert datasets["features"]["tags"] == {"mlflow.data.context": "eval"}
    digest = seen["digests"]["features"]
    assert seen["by_dataset"] == {
        "datasets.name = 'pumps'": [run_id],
        "dataset.context = 'eval'": [run_id],
        f"datasets.digest = '{digest}'": [run_id],
        "datasets.name = 'nothing-called-this'": [],
    }

    finished = seen["finished"]
    assert finished["status"] == "FINISHED"
    assert finished["run_name"] == "first-run-renamed"
    assert finished["tags"]["mlflow.runName"] == "first-run-renamed"

    second = seen["second_created"]
    assert second["run_name"] == "first-run"  # MLflow run names need not be unique
    assert seen["second_deleted"]["lifecycle_stage"] == "deleted"
    assert seen["second_deleted"]["status"] == "KILLED"
    assert seen["second_deleted"]["end_time"] >= second["start_time"]
    assert seen["log_to_deleted"]["error_code"] == "INVALID_PARAMETER_VALUE"
    assert seen["second_restored"]["lifecycle_stage"] == "active"

    assert seen["missing_run"]["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    assert seen["missing_run_log"]["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    assert seen["missing_experiment_run"]["error_code"] == "RESOURCE_DOES_NOT_EXIST"

    # Runyard's own API
    first = runyard.get(f"/experiments/{dashed(run_id)}")
    assert first.status_code == 200, first.text
    assert first.json()["status"] == "completed"
    assert first.json()["project_id"] == experiment_id
    assert first.json()["hyperparameters"] == {"lr": "0.01", "layers": "3", "optimizer": "adam"}
    assert first.json()["owner_id"] == account.id
    epochs = epochs_on_server(runyard, dashed(run_id))
    assert sorted(epochs) == list(range(1001))
    for step in range(5):
        assert epochs[step]["loss"] == 1.0 / (step + 1)
    assert epochs[0]["lr_now"] == 0.5
    assert [epochs[s]["acc"] for s in range(3)] == [0.5, 0.6, 0.7]
    assert all(epochs[s]["many"] == float(s) for s in range(1001))
    assert not any("too_many" in e or "refused_with_batch" in e for e in epochs.values())

    other = runyard.get(f"/experiments/{dashed(seen['second_id'])}")
    assert other.status_code == 200, other.text
    assert other.json()["status"] == "cancelled"
    # Runyard's names are unique per owner: the second "first-run" got the id's first 8 digits
    assert other.json()["name"] == f"first-run-{seen['second_id'][:8]}"


def test_search_runs_and_the_bulk_metric_history(
    mlflow: MlflowScripts, account: Account, runyard: httpx.Client
) -> None:
    seen = mlflow.run("search", account.with_access_token, prefix=unique("search"))
    assert seen["all_default"] == ["a", "b", "c"]  # d is deleted, e in another experiment
    assert seen["metric_gt"] == ["a", "c"]
    assert seen["metric_le"] == ["b", "c"]
    assert seen["param_eq"] == ["b"]
    assert seen["param_ne"] == ["a", "c"]
    assert seen["tag_eq"] == ["a", "c"]
    assert seen["tag_like"] == ["b"]
    assert seen["tag_backticks"] == ["b"]
    assert seen["status"] == ["a"]
    assert seen["status_ne"] == ["a", "c"]
    assert seen["run_name"] == ["b"]
    assert seen["run_name_like"] == ["a", "b", "c"]
    assert seen["run_id_in"] == ["a", "c"]
    assert seen["and"] == ["a", "c"]
    assert seen["and_param"] == ["a"]
    assert seen["two_experiments"] == ["a", "c", "e"]
    assert seen["order_metric_desc"] == ["a", "c", "b"]
    assert seen["order_metric_asc"] == ["b", "c", "a"]
    assert seen["order_param"] == ["c", "b", "a"]  # params are strings
    assert seen["order_name_desc"] == ["c", "b", "a"]
    assert seen["pages"] == [{"runs": ["a", "c"], "token": True}, {"runs": ["b"], "token": False}]
    assert seen["deleted_only"] == ["d"]
    assert seen["view_all"] == ["a", "b", "c", "d"]
    assert seen["bad_filter"]["error_code"] == "INVALID_PARAMETER_VALUE"
    assert seen["bad_order"]["error_code"] == "INVALID_PARAMETER_VALUE"
    assert seen["found_run"] == {
        "params": {"lr": "0.1"},
        "metrics": {"loss": 0.9 / 5, "acc": 0.9},
        "tags": {"model": "cnn"},
    }

    def per_run(points: list[list[Any]]) -> dict[str, list[tuple[int, float]]]:
        runs: dict[str, list[tuple[int, float]]] = {}
        for name, step, value in points:
            runs.setdefault(name, []).append((step, value))
        return runs

    assert isinstance(seen["bulk_all"], list), seen["bulk_all"]
    assert per_run(seen["bulk_all"]) == {
        name: [(s, acc / (s + 1)) for s in range(5)] for name, acc in (("a", 0.9), ("b", 0.7))
    }
    assert per_run(seen["bulk_range"]) == {"a": [(s, 0.9 / (s + 1)) for s in (1, 2, 3)]}
    sampled = [step for _name, step, _value in seen["bulk_sampled"]]
    assert len(sampled) == 3 and sampled[0] == 0 and sampled[-1] == 4  # first and last kept

    # Runyard's own search shows the same runs in the project
    project = runyard.get("/experiments", params={"project_id": seen["experiment_id"]})
    assert project.status_code == 200, project.text
    ids = seen["ids"]
    assert sorted(e["id"] for e in project.json()["items"]) == sorted(
        dashed(ids[k]) for k in ("a", "b", "c")
    )
