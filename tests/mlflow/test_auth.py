"""The credentials the stock client takes from its environment, at the gateway: a Runyard API
key or access token as ``MLFLOW_TRACKING_TOKEN`` (Bearer), the username and password as
``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD`` (HTTP Basic). Wrong ones are refused
and create nothing."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from .conftest import MlflowScripts
from .helpers import Account, api_key, dashed, unique

pytestmark = pytest.mark.mlflow


def test_the_client_authenticates_with_a_key_a_token_or_a_password(
    mlflow: MlflowScripts, account: Account, runyard: httpx.Client
) -> None:
    credentials = {
        "api key": account.with_api_key,
        "access token": account.with_access_token,
        "password": account.with_password,
    }
    attempts: dict[str, dict[str, Any]] = {
        k: {"env": v, "experiment": unique("auth")} for k, v in credentials.items()
    }
    seen = mlflow.run("auth", {}, attempts=attempts)
    for what, result in seen.items():
        assert "error_code" not in result, f"{what}: {result}"
        assert result["status"] == "FINISHED", what
        assert result["metrics"] == {"loss": 0.25}, what
        project = runyard.get(f"/projects/{result['experiment_id']}")
        assert project.status_code == 200, project.text
        name = attempts[what]["experiment"]
        assert (project.json()["name"], project.json()["owner_id"]) == (name, account.id)
        run = runyard.get(f"/experiments/{dashed(result['run_id'])}")
        assert run.status_code == 200, run.text
        assert (run.json()["owner_id"], run.json()["status"]) == (account.id, "completed")


def test_wrong_credentials_are_refused_and_create_nothing(
    mlflow: MlflowScripts, account: Account, runyard: httpx.Client
) -> None:
    credentials = {
        "wrong password": {
            "MLFLOW_TRACKING_USERNAME": account.username,
            "MLFLOW_TRACKING_PASSWORD": account.password + "!",
        },
        "unknown user": {
            "MLFLOW_TRACKING_USERNAME": account.username + "x",
            "MLFLOW_TRACKING_PASSWORD": account.password,
        },
        "wrong api key": {"MLFLOW_TRACKING_TOKEN": account.api_key[:-4] + "abcd"},
        "garbage token": {"MLFLOW_TRACKING_TOKEN": "not-a-token"},
        "no credentials": {},
    }
    attempts: dict[str, dict[str, Any]] = {
        k: {"env": v, "experiment": unique("refused")} for k, v in credentials.items()
    }
    seen = mlflow.run("auth", {}, attempts=attempts)
    for what, result in seen.items():
        # the client raised on the gateway's 401, an MLflow-shaped error
        assert result.get("error_code") == "UNAUTHENTICATED", f"{what}: {result}"
        name = attempts[what]["experiment"]
        projects = runyard.get("/projects", params={"name": name, "lifecycle_stage": "all"})
        assert projects.status_code == 200, projects.text
        assert projects.json()["items"] == [], what


def test_a_read_only_api_key_reads_but_cannot_write(
    mlflow: MlflowScripts, account: Account
) -> None:
    name = unique("readonly")
    attempts = {"mine": {"env": account.with_api_key, "experiment": name}}
    mine = mlflow.run("auth", {}, attempts=attempts)["mine"]
    assert "error_code" not in mine, mine
    reader = {"MLFLOW_TRACKING_TOKEN": api_key(account, ["experiments:read"])}
    ids = {"experiment_id": mine["experiment_id"], "run_id": mine["run_id"], "name": name}
    seen = mlflow.run("visibility", reader, try_writes=True, **ids)
    assert seen["by_id"]["name"] == name
    assert seen["runs"] == [mine["run_id"]]
    assert seen["run"]["metrics"] == {"loss": 0.25}
    for write in ("log", "tag", "delete_run", "delete"):
        assert seen[write] is not None and seen[write]["error_code"] == "PERMISSION_DENIED", (
            write,
            seen[write],
        )
    created = mlflow.run(
        "auth", {}, attempts={"reader": {"env": reader, "experiment": unique("ro")}}
    )
    assert created["reader"].get("error_code") == "PERMISSION_DENIED", created
