"""The MLflow UI's ``GET /model-versions/get-artifact?name=&version=&path=``: a file of a
registered model version, ``path`` relative to the version's files (a run's artifact, or a
logged model's files), streamed like ``get-artifact`` streams a run's, with MLflow's path checks
and errors."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from services.experiments.tests.experiments_helpers import Caller
from services.experiments.tests.mlflow.conftest import Mlflow, assert_refused

PROXY = "/api/2.0/mlflow-artifacts/artifacts"
MODEL_VERSION_ARTIFACT = "/model-versions/get-artifact"


async def upload_run_file(client: Any, who: Caller, run: dict[str, Any], path: str, data: bytes):
    experiment_id, run_id = run["info"]["experiment_id"], run["info"]["run_id"]
    put = await client.put(
        f"{PROXY}/{experiment_id}/{run_id}/artifacts/{path}", content=data, headers=who.headers
    )
    assert put.status_code == 200, put.text


async def register(mlflow: Mlflow, who: Caller, name: str, source: str, **body: Any) -> str:
    version = await mlflow.ok(
        who, "model-versions/create", {"name": name, "source": source, **body}
    )
    assert version["model_version"]["status"] == "READY", version
    number: str = version["model_version"]["version"]
    return number


async def version_file(
    client: Any, who: Caller, name: str, version: str, path: str | None, **headers: str
) -> Any:
    params = {"name": name, "version": version}
    if path is not None:
        params["path"] = path
    return await client.get(
        MODEL_VERSION_ARTIFACT, params=params, headers={**who.headers, **headers}
    )


async def test_a_versions_files_stream_by_their_path_under_the_versions_download_uri(
    mlflow, client, alice
) -> None:
    run = await mlflow.new_run(alice)
    run_id = run["info"]["run_id"]
    weights = bytes(range(256)) * 100
    await upload_run_file(client, alice, run, "model/MLmodel", b"flavors: {}")
    await upload_run_file(client, alice, run, "model/model.pkl", weights)
    await upload_run_file(client, alice, run, "model/data/config.json", b'{"a": 1}')
    await upload_run_file(client, alice, run, "MLmodel", b"the run's own, not the version's")
    await mlflow.ok(alice, "registered-models/create", {"name": "pump-cnn"})
    version = await register(mlflow, alice, "pump-cnn", f"runs:/{run_id}/model", run_id=run_id)
    uri = await mlflow.ok(
        alice, "model-versions/get-download-uri", params={"name": "pump-cnn", "version": version}
    )
    assert uri["artifact_uri"].endswith(f"/{run_id}/artifacts/model")

    got = await version_file(client, alice, "pump-cnn", version, "MLmodel")
    assert got.status_code == 200, got.text
    assert got.content == b"flavors: {}"
    assert got.headers["content-type"].startswith("text/plain")
    assert got.headers["content-disposition"].startswith("attachment")
    assert got.headers["x-content-type-options"] == "nosniff"
    binary = await version_file(client, alice, "pump-cnn", version, "model.pkl")
    assert binary.content == weights
    assert binary.headers["content-type"] == "application/octet-stream"
    assert binary.headers["etag"] == f'"{hashlib.sha256(weights).hexdigest()}"'
    ranged = await version_file(client, alice, "pump-cnn", version, "model.pkl", Range="bytes=2-5")
    assert (ranged.status_code, ranged.content) == (206, weights[2:6])
    assert ranged.headers["content-range"] == f"bytes 2-5/{len(weights)}"
    # percent-encoded as the UI may send it, decoded as MLflow decodes it
    nested = await version_file(client, alice, "pump-cnn", version, "data%2Fconfig.json")
    assert (nested.status_code, nested.content) == (200, b'{"a": 1}')
    head = await client.head(
        MODEL_VERSION_ARTIFACT,
        params={"name": "pump-cnn", "version": version, "path": "model.pkl"},
        headers=alice.headers,
    )
    assert (head.status_code, head.content) == (200, b"")
    assert head.headers["content-length"] == str(len(weights))

    # a version of the whole run: paths are the run's
    whole = await register(mlflow, alice, "pump-cnn", f"runs:/{run_id}", run_id=run_id)
    own = await version_file(client, alice, "pump-cnn", whole, "MLmodel")
    assert own.content == b"the run's own, not the version's"
    inner = await version_file(client, alice, "pump-cnn", whole, "model/MLmodel")
    assert inner.content == b"flavors: {}"


async def test_a_logged_models_version_serves_the_logged_models_files(
    mlflow, client, alice
) -> None:
    run_id = (await mlflow.new_run(alice))["info"]["run_id"]
    model_id = await mlflow.logged_model_with_file(alice, run_id)
    await mlflow.ok(alice, "registered-models/create", {"name": "m"})
    version = await register(mlflow, alice, "m", f"models:/{model_id}", model_id=model_id)
    got = await version_file(client, alice, "m", version, "MLmodel")
    assert (got.status_code, got.content) == (200, b"m")
    assert got.headers["content-type"].startswith("text/plain")


async def test_unsafe_paths_are_mlflows_invalid_path_before_the_version_is_looked_up(
    client, alice
) -> None:
    # as MLflow's test_path_validation asks it: no such model, the path is refused first
    for path in (
        "../path",
        "a/../../b",
        "a/..%2F..%2Fb",
        "%252E%252E/x",
        "/etc/passwd",
        "file:///etc/passwd",
        "C:/Windows/win.ini",
        "a\\b",
        "a#b",
    ):
        response = await version_file(client, alice, "model", "1", path)
        assert (response.status_code, response.json()) == (
            400,
            {"error_code": "INVALID_PARAMETER_VALUE", "message": "Invalid path"},
        ), path


async def test_missing_or_malformed_parameters_folders_and_absent_files_are_refused(
    mlflow, client, alice
) -> None:
    run = await mlflow.new_run(alice)
    run_id = run["info"]["run_id"]
    await upload_run_file(client, alice, run, "model/MLmodel", b"m")
    await upload_run_file(client, alice, run, "model/data/x.bin", b"x")
    await mlflow.ok(alice, "registered-models/create", {"name": "pump"})
    version = await register(mlflow, alice, "pump", f"runs:/{run_id}/model")

    missing_path = await version_file(client, alice, "pump", version, None)
    assert_refused(missing_path, 400, "INVALID_PARAMETER_VALUE", "'path'")
    no_name = await client.get(
        MODEL_VERSION_ARTIFACT, params={"version": "1", "path": "MLmodel"}, headers=alice.headers
    )
    assert_refused(no_name, 400, "INVALID_PARAMETER_VALUE", "'name'")
    bad_version = await version_file(client, alice, "pump", "one", "MLmodel")
    assert_refused(bad_version, 400, "INVALID_PARAMETER_VALUE", "version")
    for path in ("data", "data/", ""):
        folder = await version_file(client, alice, "pump", version, path)
        assert_refused(folder, 400, "INVALID_PARAMETER_VALUE", "refers to a directory")
    absent = await version_file(client, alice, "pump", version, "data/y.bin")
    assert_refused(absent, 404, "RESOURCE_DOES_NOT_EXIST", "data/y.bin")
    no_version = await version_file(client, alice, "pump", "7", "MLmodel")
    assert_refused(no_version, 404, "RESOURCE_DOES_NOT_EXIST", "version=7")
    no_model = await version_file(client, alice, "nothing", "1", "MLmodel")
    assert_refused(no_model, 404, "RESOURCE_DOES_NOT_EXIST", "nothing")

    # once the run behind the version is deleted, its files are gone with it
    deleted = await client.delete(f"/api/v1/experiments/{uuid.UUID(run_id)}", headers=alice.headers)
    assert deleted.status_code == 204, deleted.text
    gone = await version_file(client, alice, "pump", version, "MLmodel")
    assert_refused(gone, 404, "RESOURCE_DOES_NOT_EXIST")


async def test_another_users_model_version_does_not_exist_for_the_caller(
    mlflow, client, alice, bob
) -> None:
    run = await mlflow.new_run(alice)
    await upload_run_file(client, alice, run, "model/MLmodel", b"alice's")
    await mlflow.ok(alice, "registered-models/create", {"name": "shared-name"})
    version = await register(mlflow, alice, "shared-name", f"runs:/{run['info']['run_id']}/model")
    stolen = await version_file(client, bob, "shared-name", version, "MLmodel")
    assert_refused(stolen, 404, "RESOURCE_DOES_NOT_EXIST")
    # bob's model of the same name is his own, with his own files
    bobs_run = await mlflow.new_run(bob)
    await upload_run_file(client, bob, bobs_run, "model/MLmodel", b"bob's")
    await mlflow.ok(bob, "registered-models/create", {"name": "shared-name"})
    await register(mlflow, bob, "shared-name", f"runs:/{bobs_run['info']['run_id']}/model")
    assert (await version_file(client, bob, "shared-name", "1", "MLmodel")).content == b"bob's"
    assert (await version_file(client, alice, "shared-name", "1", "MLmodel")).content == b"alice's"
