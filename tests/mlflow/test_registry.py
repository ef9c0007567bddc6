"""The Model Registry through the stock MLflow client against the whole stack: register_model
(from a run's files and from a logged model), aliases (set, move, get, delete, load by alias),
search; and the same registry through Runyard's own API: lineage, hash, aliases, events
reaching a signed webhook."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx
import pytest

from .conftest import MlflowScripts
from .helpers import (
    Account,
    Receiver,
    dashed,
    register_webhook,
    signed_deliveries,
    unique,
    wait_until,
)

pytestmark = pytest.mark.mlflow


def test_register_model_aliases_and_search(
    mlflow: MlflowScripts, account: Account, runyard: httpx.Client, receiver: Receiver
) -> None:
    secret = register_webhook(runyard, receiver, ["model_version.alias_set"])
    prefix = unique("reg")
    name = f"{prefix}-pump-cnn"
    seen = mlflow.run("registry", account.with_api_key, prefix=prefix)

    files_run, sklearn_run = seen["files_run"], seen["sklearn_run"]
    first, second = seen["registered"]
    assert (first["version"], second["version"]) == ("1", "2")
    assert first["status"] == second["status"] == "READY"
    assert first["run_id"] == files_run
    third = seen["third"]
    assert (third["version"], third["status"], third["run_id"]) == ("3", "READY", sklearn_run)
    assert third["source"] == f"models:/{seen['logged_model_id']}"

    assert seen["champion"]["version"] == "3"
    assert sorted(seen["champion"]["aliases"]) == ["challenger", "champion"]
    assert seen["model_aliases"] == {"champion": "3", "challenger": "3"}
    assert seen["latest"] == ["3"]
    assert seen["same_predictions"] is True
    assert seen["challenger_gone"]["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    assert seen["reserved_alias"]["error_code"] == "INVALID_PARAMETER_VALUE"
    assert seen["delete_champion"]["error_code"] == "INVALID_STATE"
    assert seen["duplicate"]["error_code"] == "RESOURCE_ALREADY_EXISTS"
    assert seen["missing"]["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    assert seen["search_prefix"] == [f"{prefix}-other", name]
    assert seen["search_tag"] == [f"{prefix}-other"]
    assert seen["versions_of_files_run"] == ["1", "2"]
    assert seen["versions_by_name"] == ["1", "2", "3"]

    # Runyard's own API: the same model, its lineage, hash and aliases
    [model] = runyard.get("/models", params={"name": name}).json()["items"]
    assert model["aliases"] == {"champion": 3}
    versions = runyard.get(f"/models/{model['id']}/versions").json()["items"]
    assert [v["version"] for v in versions] == [3, 2, 1]
    v1 = versions[-1]
    assert v1["experiment_id"] == dashed(files_run)
    assert (v1["artifact_path"], v1["file_count"], v1["size"]) == ("model", 2, 12 + 1024)
    mlmodel, weights = b"flavors: {}\n", b"\x00\x01" * 512
    manifest = (
        f"{hashlib.sha256(mlmodel).hexdigest()}  MLmodel\n"
        f"{hashlib.sha256(weights).hexdigest()}  weights.bin\n"
    )
    assert v1["sha256"] == hashlib.sha256(manifest.encode()).hexdigest()

    # the champion's moves reached the webhook, signed, in order
    def deliveries() -> list[dict[str, Any]]:
        return signed_deliveries(receiver, secret, "model_version.alias_set")

    wait_until(lambda: len(deliveries()) >= 3, "three alias_set deliveries")
    moves = [(d["data"]["alias"], d["data"]["model_version"]) for d in deliveries()]
    assert sorted(moves) == [("challenger", 3), ("champion", 1), ("champion", 3)]
    champion_moves = [d["data"] for d in deliveries() if d["data"]["alias"] == "champion"]
    assert champion_moves[-1]["previous_version"] == 1
