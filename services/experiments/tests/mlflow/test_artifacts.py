"""MLflow's artifact proxy and run artifact listing over the service's HTTP API: the paths the
stock client builds from ``mlflow-artifacts:/<experiment_id>/<run_id>/artifacts``, stored as
Runyard artifacts of the experiment (same store, quota and events as Runyard's own API)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from runyard.experiments.config import Settings
from runyard.experiments.main import create_app
from runyard.experiments.mlflow import artifacts_api, logged_models_api
from runyard.shared.testing import running_app
from services.experiments.tests.experiments_helpers import Caller, new_experiment, outbox

PROXY = "/api/2.0/mlflow-artifacts/artifacts"


def with_mlflow_routes(app: Any) -> Any:
    """The service app, with this feature's routers if ``main`` does not register them yet."""
    paths = {getattr(route, "path", "") for route in app.routes}
    for router in (artifacts_api.router, logged_models_api.router):
        if not any(getattr(r, "path", "") in paths for r in router.routes):
            app.include_router(router)
    return app


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[Any]:
    async with running_app(with_mlflow_routes(create_app(settings))) as c:
        yield c


async def new_project(client: Any, who: Caller) -> str:
    response = await client.post(
        "/api/v1/projects", json={"name": f"p-{uuid.uuid4().hex[:8]}"}, headers=who.headers
    )
    assert response.status_code == 201, response.text
    project_id: str = response.json()["id"]
    return project_id


def root(experiment_id: str, run: dict[str, Any]) -> str:
    return f"{experiment_id}/{uuid.UUID(run['id']).hex}/artifacts"


async def test_upload_download_list_delete_through_the_proxy(client, db, alice) -> None:
    project = await new_project(client, alice)
    run = await new_experiment(client, alice, project=project)
    base = root(project, run)
    model = b"pickle-bytes" * 500
    put = await client.put(
        f"{PROXY}/{base}/model/model.pkl",
        content=model,
        headers={**alice.headers, "Content-Type": "application/octet-stream"},
    )
    assert put.status_code == 200, put.text
    assert put.json() == {}
    for path, body in (("model/MLmodel", b"flavors: {}"), ("metrics.json", b"{}")):
        assert (
            await client.put(f"{PROXY}/{base}/{path}", content=body, headers=alice.headers)
        ).status_code == 200

    # stored as the experiment's Runyard artifacts, visible through Runyard's own API
    native = await client.get(f"/api/v1/experiments/{run['id']}/artifacts", headers=alice.headers)
    assert [a["path"] for a in native.json()["items"]] == [
        "metrics.json",
        "model/MLmodel",
        "model/model.pkl",
    ]
    created = [e for e in await outbox(db) if e["type"] == "artifact.created"]
    assert [e["data"]["path"] for e in created] == [
        "model/model.pkl",
        "model/MLmodel",
        "metrics.json",
    ]

    # listing: direct children only, base names, directories without a size
    top = await client.get(PROXY, params={"path": base}, headers=alice.headers)
    assert top.status_code == 200, top.text
    assert top.json()["files"] == [
        {"path": "metrics.json", "is_dir": False, "file_size": 2},
        {"path": "model", "is_dir": True},
    ]
    inner = await client.get(PROXY, params={"path": f"{base}/model"}, headers=alice.headers)
    assert inner.json()["files"] == [
        {"path": "MLmodel", "is_dir": False, "file_size": 11},
        {"path": "model.pkl", "is_dir": False, "file_size": len(model)},
    ]
    # a file or a missing directory: nothing in it
    for empty in (f"{base}/metrics.json", f"{base}/nothing"):
        listed = await client.get(PROXY, params={"path": empty}, headers=alice.headers)
        assert listed.json()["files"] == []

    got = await client.get(f"{PROXY}/{base}/model/model.pkl", headers=alice.headers)
    assert got.status_code == 200
    assert got.content == model
    assert got.headers["etag"] == f'"{hashlib.sha256(model).hexdigest()}"'
    ranged = await client.get(
        f"{PROXY}/{base}/model/model.pkl", headers={**alice.headers, "Range": "bytes=12-23"}
    )
    assert (ranged.status_code, ranged.content) == (206, model[12:24])
    head = await client.head(f"{PROXY}/{base}/model/model.pkl", headers=alice.headers)
    assert (head.status_code, head.content) == (200, b"")
    assert head.headers["content-length"] == str(len(model))
    assert head.headers["etag"] == got.headers["etag"]
    missing = await client.get(f"{PROXY}/{base}/model/nope.bin", headers=alice.headers)
    assert missing.status_code == 404
    assert missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"

    # deleting a directory deletes what is under it; a missing path is no error
    deleted = await client.delete(f"{PROXY}/{base}/model", headers=alice.headers)
    assert (deleted.status_code, deleted.json()) == (200, {})
    assert (await client.delete(f"{PROXY}/{base}/model", headers=alice.headers)).status_code == 200
    after = await client.get(PROXY, params={"path": base}, headers=alice.headers)
    assert after.json()["files"] == [{"path": "metrics.json", "is_dir": False, "file_size": 2}]
    gone = [e for e in await outbox(db) if e["type"] == "artifact.deleted"]
    assert sorted(e["data"]["path"] for e in gone) == ["model/MLmodel", "model/model.pkl"]


async def test_both_prefixes_and_the_default_experiment(client, alice) -> None:
    run = await new_experiment(client, alice)  # no project: MLflow experiment "0"
    base = root("0", run)
    put = await client.put(
        f"/ajax-api/2.0/mlflow-artifacts/artifacts/{base}/a.txt",
        content=b"hello",
        headers=alice.headers,
    )
    assert put.status_code == 200, put.text
    dashed = f"0/{run['id']}/artifacts"  # a dashed run id is the same run
    got = await client.get(f"{PROXY}/{dashed}/a.txt", headers=alice.headers)
    assert got.content == b"hello"


async def test_run_artifact_listing(client, alice) -> None:
    project = await new_project(client, alice)
    run = await new_experiment(client, alice, project=project)
    base = root(project, run)
    for path in ("plots/loss.png", "plots/deep/acc.png", "notes.txt"):
        await client.put(f"{PROXY}/{base}/{path}", content=b"x" * 3, headers=alice.headers)
    run_id = uuid.UUID(run["id"]).hex
    for prefix in ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow"):
        top = await client.get(
            f"{prefix}/artifacts/list", params={"run_id": run_id}, headers=alice.headers
        )
        assert top.status_code == 200, top.text
        assert top.json() == {
            "root_uri": f"mlflow-artifacts:/{project}/{run_id}/artifacts",
            "files": [
                {"path": "notes.txt", "is_dir": False, "file_size": 3},
                {"path": "plots", "is_dir": True},
            ],
        }
    plots = await client.get(
        "/api/2.0/mlflow/artifacts/list",
        params={"run_id": run_id, "path": "plots"},
        headers=alice.headers,
    )
    assert plots.json()["files"] == [
        {"path": "plots/deep", "is_dir": True},
        {"path": "plots/loss.png", "is_dir": False, "file_size": 3},
    ]
    # "." names the directory it is in: the stock client lists a run's root as "."
    dotted = await client.get(
        f"/api/2.0/mlflow-artifacts/artifacts?path={base}/./plots/.", headers=alice.headers
    )
    assert dotted.status_code == 200, dotted.text
    assert dotted.json()["files"] == [
        {"path": "deep", "is_dir": True},
        {"path": "loss.png", "is_dir": False, "file_size": 3},
    ]
    empty = await client.get(
        "/api/2.0/mlflow/artifacts/list",
        params={"run_id": run_id, "path": "none"},
        headers=alice.headers,
    )
    assert "files" not in empty.json()
    unknown = await client.get(
        "/api/2.0/mlflow/artifacts/list", params={"run_id": uuid.uuid4().hex}, headers=alice.headers
    )
    assert (unknown.status_code, unknown.json()["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")


async def test_the_run_must_belong_to_the_experiment_in_the_path(client, alice) -> None:
    project = await new_project(client, alice)
    run = await new_experiment(client, alice, project=project)
    for wrong in ("0", str(uuid.uuid4())):
        response = await client.put(
            f"{PROXY}/{root(wrong, run)}/a.txt", content=b"x", headers=alice.headers
        )
        assert response.status_code == 404, response.text
        assert response.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    odd = await client.get(PROXY, params={"path": f"{project}/somewhere"}, headers=alice.headers)
    assert (odd.status_code, odd.json()["error_code"]) == (400, "INVALID_PARAMETER_VALUE")


async def test_others_runs_are_not_found_and_viewers_cannot_upload(
    client, alice, bob, viewer
) -> None:
    run = await new_experiment(client, alice)
    base = root("0", run)
    await client.put(f"{PROXY}/{base}/a.txt", content=b"mine", headers=alice.headers)
    stolen = await client.get(f"{PROXY}/{base}/a.txt", headers=bob.headers)
    assert (stolen.status_code, stolen.json()["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")
    overwrite = await client.put(f"{PROXY}/{base}/a.txt", content=b"bob", headers=bob.headers)
    assert overwrite.status_code == 404
    wipe = await client.delete(f"{PROXY}/{base}", headers=bob.headers)
    assert wipe.status_code == 404
    # a viewer reads everything, writes nothing
    seen = await client.get(f"{PROXY}/{base}/a.txt", headers=viewer.headers)
    assert seen.content == b"mine"
    refused = await client.put(f"{PROXY}/{base}/b.txt", content=b"v", headers=viewer.headers)
    assert (refused.status_code, refused.json()["error_code"]) == (403, "PERMISSION_DENIED")
    got = await client.get(f"{PROXY}/{base}/a.txt", headers=alice.headers)
    assert got.content == b"mine"


async def test_bad_paths_and_limits_come_out_in_mlflows_shape(settings, alice) -> None:
    async with running_app(
        with_mlflow_routes(create_app(settings.model_copy(update={"artifact_max_bytes": 10})))
    ) as client:
        run = await new_experiment(client, alice)
        base = root("0", run)
        escape = await client.put(
            f"{PROXY}/{base}/a/%2E%2E/%2E%2E/b", content=b"x", headers=alice.headers
        )
        # MLflow's server answers a path it refuses with 400 "Invalid path"
        assert (escape.status_code, escape.json()) == (
            400,
            {"error_code": "INVALID_PARAMETER_VALUE", "message": "Invalid path"},
        )
        big = await client.put(f"{PROXY}/{base}/big.bin", content=b"x" * 11, headers=alice.headers)
        assert (big.status_code, big.json()["error_code"]) == (413, "RESOURCE_LIMIT_EXCEEDED")
        listed = await client.get(PROXY, params={"path": base}, headers=alice.headers)
        assert "files" not in listed.json() or listed.json()["files"] == []


async def test_multipart_uploads_are_refused_in_the_words_the_client_falls_back_on(
    client, alice
) -> None:
    run = await new_experiment(client, alice)
    response = await client.post(
        f"/api/2.0/mlflow-artifacts/mpu/create/{root('0', run)}/big.bin",
        json={"path": "big.bin", "num_parts": 2},
        headers=alice.headers,
    )
    assert response.status_code == 501
    assert response.json()["message"].startswith(
        "Multipart upload is not supported for the current artifact repository"
    )
