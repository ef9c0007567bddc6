"""MLflow experiments (Runyard projects) through the stock ``MlflowClient``: the virtual
"Default" experiment "0", create/get/by name, search with filters, order and pages, tags,
rename, delete and restore (with their runs); Runyard's projects API shows the same."""

from __future__ import annotations

import uuid

import httpx
import pytest

from .conftest import MlflowScripts
from .helpers import Account, dashed, unique

pytestmark = pytest.mark.mlflow


def test_experiments_lifecycle_search_and_errors(
    mlflow: MlflowScripts, account: Account, runyard: httpx.Client
) -> None:
    prefix = unique("exp")
    seen = mlflow.run("experiments", account.with_api_key, prefix=prefix)
    alpha, beta, gamma = (seen["ids"][k] for k in ("alpha", "beta", "gamma"))

    default = seen["default"]
    assert (default["experiment_id"], default["name"]) == ("0", "Default")
    assert default["lifecycle_stage"] == "active"
    assert seen["default_by_name"]["experiment_id"] == "0"
    assert seen["default_listed"] is True  # the UI's list of experiments starts with it

    assert seen["alpha"]["experiment_id"] == alpha
    assert seen["alpha"]["name"] == f"{prefix}-alpha"
    assert seen["alpha"]["tags"] == {"team": "vision"}
    assert seen["alpha"]["lifecycle_stage"] == "active"
    assert seen["alpha"]["artifact_location"] == f"mlflow-artifacts:/{alpha}"
    assert seen["alpha_by_name"]["experiment_id"] == alpha
    assert seen["missing_by_name"] is None
    assert seen["duplicate"]["error_code"] == "RESOURCE_ALREADY_EXISTS"
    assert seen["missing_id"]["error_code"] == "RESOURCE_DOES_NOT_EXIST"

    names = [f"{prefix}-{n}" for n in ("alpha", "beta", "gamma")]
    assert sorted(seen["search_all"]) == names
    assert seen["search_by_name_asc"] == names
    assert seen["search_by_name_desc"] == names[::-1]
    assert seen["search_tag"] == [alpha]
    assert seen["pages"] == [
        {"names": names[:2], "token": True},
        {"names": names[2:], "token": False},
    ]

    assert seen["alpha_tagged"]["tags"] == {"team": "audio", "stage": "dev"}
    assert seen["beta_renamed"]["name"] == f"{prefix}-delta"
    assert seen["beta_old_name"] is None
    assert seen["rename_taken"] is not None  # the name stays unique

    assert seen["gamma_deleted"]["lifecycle_stage"] == "deleted"
    assert seen["gamma_run_deleted"] == "deleted"
    assert sorted(seen["active_only"]) == [f"{prefix}-alpha", f"{prefix}-delta"]
    assert seen["deleted_only"] == [f"{prefix}-gamma"]
    assert sorted(seen["view_all"]) == [f"{prefix}-{n}" for n in ("alpha", "delta", "gamma")]
    assert seen["rename_deleted"] is not None
    assert seen["gamma_restored"]["lifecycle_stage"] == "active"
    assert seen["gamma_run_restored"] == "active"

    assert seen["ajax_get"]["status"] == 200, seen["ajax_get"]
    assert seen["ajax_get"]["body"]["experiment"]["name"] == f"{prefix}-alpha"

    # "Default" is Runyard's experiments without a project: it can't be deleted
    assert seen["delete_default"] is not None
    assert seen["default_after"]["lifecycle_stage"] == "active"

    # Runyard's own API: the experiments are the owner's projects
    project = runyard.get(f"/projects/{alpha}")
    assert project.status_code == 200, project.text
    assert project.json()["name"] == f"{prefix}-alpha"
    assert project.json()["tags"] == {"team": "audio", "stage": "dev"}
    assert project.json()["owner_id"] == account.id
    renamed = runyard.get("/projects", params={"name": f"{prefix}-delta"}).json()["items"]
    assert [p["id"] for p in renamed] == [beta]
    assert runyard.get("/projects", params={"name": f"{prefix}-beta"}).json()["items"] == []
    deleted = runyard.get("/projects", params={"lifecycle_stage": "deleted"}).json()["items"]
    assert gamma in [p["id"] for p in deleted]
    assert gamma not in [p["id"] for p in runyard.get("/projects").json()["items"]]
    # the run of the deleted experiment is out of Runyard's lists too
    listed = runyard.get("/experiments", params={"project_id": gamma}).json()["items"]
    assert dashed(seen["run_id_in_gamma"]) not in [e["id"] for e in listed]


def test_runyard_native_runs_through_the_client_and_nobody_elses(
    mlflow: MlflowScripts, account: Account, other_account: Account, runyard: httpx.Client
) -> None:
    """A project and an experiment made with Runyard's own API are an MLflow experiment and run
    to their owner's client (params as strings, epochs as steps); another user's client finds
    neither, and can't write to them."""
    name = unique("native")
    project = runyard.post("/projects", json={"name": name, "tags": {"origin": "runyard"}})
    assert project.status_code == 201, project.text
    experiment = runyard.post(
        "/experiments",
        json={
            "name": unique("native-run"),
            "project": project.json()["id"],
            "hyperparameters": {"lr": 0.001, "batch_size": 64, "arch": "cnn"},
        },
    )
    assert experiment.status_code == 201, experiment.text
    experiment_id = experiment.json()["id"]
    assert runyard.post(f"/experiments/{experiment_id}/start").status_code == 200
    epochs = [
        {"epoch": 1, "train_loss": 0.5, "metrics": {"f1": 0.7}},
        {"epoch": 2, "train_loss": 0.25, "metrics": {"f1": 0.8}},
    ]
    logged = runyard.post(f"/experiments/{experiment_id}/runs", json={"runs": epochs})
    assert logged.status_code == 201, logged.text
    assert runyard.post(f"/experiments/{experiment_id}/complete", json={}).status_code == 200
    ids = {
        "experiment_id": project.json()["id"],
        "run_id": uuid.UUID(experiment_id).hex,
        "name": name,
    }

    owner = mlflow.run("visibility", account.with_api_key, **ids)
    assert owner["by_id"]["name"] == name
    assert owner["by_id"]["tags"] == {"origin": "runyard"}
    assert owner["by_name"]["experiment_id"] == ids["experiment_id"]
    assert owner["search"] == [ids["experiment_id"]]
    assert owner["runs"] == [ids["run_id"]]
    run = owner["run"]
    assert run["status"] == "FINISHED"
    assert run["params"] == {"lr": "0.001", "batch_size": "64", "arch": "cnn"}
    assert run["metrics"] == {"train_loss": 0.25, "f1": 0.8}
    assert run["run_name"] == experiment.json()["name"]
    assert owner["history"] == [[1, 0.5], [2, 0.25]]

    other = mlflow.run("visibility", other_account.with_api_key, try_writes=True, **ids)
    hidden = ("RESOURCE_DOES_NOT_EXIST", "PERMISSION_DENIED")
    assert other["by_id"]["error_code"] in hidden
    assert other["by_name"] is None
    assert other["search"] == []
    assert other["runs"] == [] or other["runs"]["error_code"] in hidden
    assert other["run"]["error_code"] in hidden
    assert other["history"]["error_code"] in hidden
    for write in ("log", "tag", "delete_run", "delete"):
        assert other[write]["error_code"] in hidden, write
    still = runyard.get(f"/experiments/{experiment_id}").json()
    assert still["total_epochs"] == 2
