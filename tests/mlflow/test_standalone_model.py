"""An MLflow 3 logged model made outside a run, through the stock client: its files are the
model's own Runyard artifacts (no run holds them), loaded back by ``models:/<model_id>``, and
their ``logged_model_artifact.created`` events reach a signed webhook; registered, its versions'
files are listed and served by Runyard's own API too."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx
import pytest

from .conftest import MlflowScripts
from .helpers import (
    Account,
    Receiver,
    register_webhook,
    signed_deliveries,
    unique,
    wait_until,
)

pytestmark = pytest.mark.mlflow


def test_log_model_without_a_run(
    mlflow: MlflowScripts, account: Account, runyard: httpx.Client, receiver: Receiver
) -> None:
    secret = register_webhook(runyard, receiver, ["logged_model_artifact.created"])
    name = unique("standalone-model")
    seen = mlflow.run(
        "standalone_model",
        account.with_api_key,
        experiment=unique("standalone"),
        registered_model=name,
    )

    model = seen["model"]
    model_uri = f"models:/{model['model_id']}"
    assert not model["source_run_id"]  # the client reads an unset id as ""
    assert seen["active_run_after"] is False
    assert model["status"] == "READY"
    assert model["experiment_id"] == seen["experiment_id"]
    assert model["artifact_location"] == (
        f"mlflow-artifacts:/{seen['experiment_id']}/models/{model['model_id']}/artifacts"
    )
    files = dict(seen["files"])
    assert {"MLmodel", "requirements.txt"} <= set(files)
    assert not any(files.values())  # the model's files, no folders
    # downloaded byte for byte (the client adds a local ``registered_model_meta``)
    assert set(files) <= set(seen["downloaded"])
    assert seen["same_predictions"] is True

    # registered twice: from models:/<id>, and by log_model(registered_model_name=) with no run
    # (the client reads no model_id from a version: its source names the model)
    assert seen["registered"] == [
        {"version": "1", "status": "READY", "run_id": None, "source": model_uri},
        {
            "version": "2",
            "status": "READY",
            "run_id": None,
            "source": f"models:/{seen['second_model_id']}",
        },
    ]
    assert seen["same_predictions_by_version"] is True
    [registered] = runyard.get("/models", params={"name": name}).json()["items"]
    versions = runyard.get(f"/models/{registered['id']}/versions").json()["items"]
    external = seen["external"]
    assert (external["version"], external["status"]) == ("3", "READY")
    assert [(v["version"], v["experiment_id"], v["logged_model_id"]) for v in versions] == [
        (3, None, external["model_id"]),
        (2, None, seen["second_model_id"]),
        (1, None, model["model_id"]),
    ]
    assert versions[0]["status"] == "ready"
    # Runyard's own API lists and serves a version's files: its logged model's, byte for byte
    listed = runyard.get(f"/models/{registered['id']}/versions/1/files")
    assert listed.status_code == 200, listed.text
    assert {f["path"]: f["sha256"] for f in listed.json()} == {
        path: seen["downloaded"][path] for path in files
    }
    mlmodel = runyard.get(f"/models/{registered['id']}/versions/1/files/MLmodel")
    assert mlmodel.status_code == 200, mlmodel.text
    assert hashlib.sha256(mlmodel.content).hexdigest() == seen["downloaded"]["MLmodel"]
    # the external model's version: what MLflow stored for it (its MLmodel), as registered
    external_files = runyard.get(f"/models/{registered['id']}/versions/3/files").json()
    manifest = "".join(f"{f['sha256']}  {f['path']}\n" for f in external_files)
    assert hashlib.sha256(manifest.encode()).hexdigest() == versions[0]["sha256"]

    # no run was made for it: the project has no experiment
    experiments = runyard.get("/experiments", params={"project_id": seen["experiment_id"]})
    assert experiments.status_code == 200, experiments.text
    assert experiments.json()["items"] == []

    # each stored file reached the webhook, signed, with its digest
    def deliveries() -> list[dict[str, Any]]:
        return [
            d
            for d in signed_deliveries(receiver, secret, "logged_model_artifact.created")
            if d["subject"] == model["model_id"]
        ]

    wait_until(
        lambda: {d["data"]["path"] for d in deliveries()} >= set(files),
        "a logged_model_artifact.created delivery per file",
    )
    by_path = {d["data"]["path"]: d["data"] for d in deliveries()}
    for path in files:
        assert by_path[path]["sha256"] == seen["downloaded"][path]
        assert by_path[path]["logged_model_id"] == model["model_id"]
        assert by_path[path]["owner_id"] == account.id
