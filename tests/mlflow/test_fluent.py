"""The fluent API as training code uses it, with artifacts uploaded, listed and downloaded byte
for byte through the gateway's ``/api/2.0/mlflow-artifacts``; the Default experiment "0"."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx
import pytest

from .conftest import MlflowScripts
from .helpers import Account, dashed, unique

pytestmark = pytest.mark.mlflow


def runyard_artifacts(runyard: httpx.Client, experiment_id: str) -> dict[str, dict[str, Any]]:
    listed = runyard.get(f"/experiments/{experiment_id}/artifacts", params={"limit": 500})
    assert listed.status_code == 200, listed.text
    return {a["path"]: a for a in listed.json()["items"]}


def test_fluent_run_with_artifacts(
    mlflow: MlflowScripts, account: Account, runyard: httpx.Client
) -> None:
    name, run_name = unique("fluent"), unique("fluent-run")
    seen = mlflow.run("fluent", account.with_api_key, experiment=name, run_name=run_name)
    assert seen["set_again"] == seen["experiment_id"]
    run = seen["run"]
    assert seen["active"] == run["run_id"]
    assert seen["after"] is True
    assert run["experiment_id"] == seen["experiment_id"]
    assert run["run_name"] == run_name
    assert run["status"] == "FINISHED"
    assert run["end_time"] >= run["start_time"]
    assert run["params"] == {"lr": "0.01", "epochs": "3", "optimizer": "adam"}
    assert run["metrics"] == {"train_loss": 1 / 3, "val_accuracy": 0.6 + 2 / 10, "val_loss": 0.5}
    assert run["tags"]["team"] == "pumps"
    assert run["tags"]["purpose"] == "compat"
    assert run["tags"]["mlflow.source.name"].endswith("fluent.py")
    assert run["tags"]["mlflow.user"]
    assert seen["history"] == {
        "train_loss": [[s, 1.0 / (s + 1)] for s in range(3)],
        "val_accuracy": [[s, 0.6 + s / 10] for s in range(3)],
        "val_loss": [[2, 0.5]],
    }

    # nested runs: tagged with their parent, found by it, and in the pandas frame
    children = seen["children"]
    assert seen["after_children"] == run["run_id"]
    assert seen["child_parent_tags"] == [run["run_id"], run["run_id"]]
    assert seen["children_by_parent"] == sorted(children)
    assert seen["frame"] == {
        "run_ids": [children[1], children[0], run["run_id"]],
        "status": ["FINISHED"] * 3,
        "params.lr": ["0.01", "0.1", "0.01"],
        "metrics.val_loss": [0.02, 0.2, 0.5],
        "tags.team": [None, None, "pumps"],
    }

    sizes = seen["sizes"]
    assert seen["top"] == [
        ["notes.txt", False, sizes["notes.txt"]],
        ["plots", True, None],
        ["weights", True, None],
    ]
    assert seen["plots"] == [
        ["plots/curve.bin", False, sizes["plots/curve.bin"]],
        ["plots/deeper", True, None],
    ]
    # MLflow leaves a size of 0 out of the message: the client reads it as None
    assert [[p, d, s or 0] for p, d, s in seen["deeper"]] == [
        ["plots/deeper/empty.dat", False, 0],
        [
            "plots/deeper/names with spaces.json",
            False,
            sizes["plots/deeper/names with spaces.json"],
        ],
    ]
    assert seen["downloaded"] == seen["uploaded"]
    assert seen["one_equal"] is True

    # Runyard's own API: the run is a completed experiment of the project, with its epochs
    # and its artifacts (same bytes)
    experiment_id = dashed(run["run_id"])
    found = runyard.get(f"/experiments/{experiment_id}")
    assert found.status_code == 200, found.text
    assert found.json()["status"] == "completed"
    assert found.json()["project_id"] == seen["experiment_id"]
    assert found.json()["name"] == run_name
    assert found.json()["total_epochs"] == 3
    artifacts = runyard_artifacts(runyard, experiment_id)
    paths = {}
    for relative, sha256 in seen["uploaded"].items():
        (paths[relative],) = [p for p in artifacts if p == relative or p.endswith(f"/{relative}")]
        assert artifacts[paths[relative]]["sha256"] == sha256
        assert artifacts[paths[relative]]["size"] == sizes[relative]
    download = runyard.get(f"/experiments/{experiment_id}/artifacts/{paths['plots/curve.bin']}")
    assert download.status_code == 200, download.text
    assert hashlib.sha256(download.content).hexdigest() == seen["uploaded"]["plots/curve.bin"]

    default = seen["default_run"]
    assert default["experiment_id"] == "0"
    assert default["artifact_uri"] == f"mlflow-artifacts:/0/{default['run_id']}/artifacts"
    assert default["run_id"] in seen["default_search"]
    in_default = runyard.get(f"/experiments/{dashed(default['run_id'])}")
    assert in_default.status_code == 200, in_default.text
    assert in_default.json()["project_id"] is None
    assert in_default.json()["status"] == "completed"
