"""MLflow 3 logged models over the service's HTTP API: create, params, tags, finalize, search,
delete, and the model's files kept as artifacts of its source run."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from runyard.experiments.config import Settings
from runyard.experiments.main import create_app
from runyard.shared.testing import running_app
from services.experiments.tests.experiments_helpers import Caller, fetch, new_experiment, outbox
from services.experiments.tests.mlflow.conftest import assert_refused
from services.experiments.tests.mlflow.test_artifacts import new_project, with_mlflow_routes

API = "/api/2.0/mlflow"
AJAX = "/ajax-api/2.0/mlflow"
PROXY = "/api/2.0/mlflow-artifacts/artifacts"


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[Any]:
    async with running_app(with_mlflow_routes(create_app(settings))) as c:
        yield c


async def create_model(client: Any, who: Caller, **body: Any) -> dict[str, Any]:
    response = await client.post(f"{API}/logged-models", json=body, headers=who.headers)
    assert response.status_code == 200, response.text
    model: dict[str, Any] = response.json()["model"]
    return model


def tags_of(model: dict[str, Any]) -> dict[str, str]:
    return {t["key"]: t["value"] for t in model["info"].get("tags", [])}


async def test_a_models_life(client, db, alice) -> None:
    project = await new_project(client, alice)
    run = await new_experiment(client, alice, project=project)
    run_id = uuid.UUID(run["id"]).hex
    model = await create_model(
        client,
        alice,
        experiment_id=project,
        name="model",
        model_type="sklearn",
        source_run_id=run_id,
        params=[{"key": "alpha", "value": "0.5"}],
        tags=[{"key": "mlflow.source.type", "value": "LOCAL"}],
    )
    info = model["info"]
    model_id = info["model_id"]
    assert model_id.startswith("m-") and len(model_id) == 34
    assert info["experiment_id"] == project
    assert info["source_run_id"] == run_id
    assert info["status"] == "LOGGED_MODEL_PENDING"
    assert info["artifact_uri"] == f"mlflow-artifacts:/{project}/models/{model_id}/artifacts"
    assert model["data"]["params"] == [{"key": "alpha", "value": "0.5"}]

    url = f"{API}/logged-models/{model_id}"
    more = await client.post(
        f"{url}/params",
        json={"model_id": model_id, "params": [{"key": "l1", "value": "0.1"}]},
        headers=alice.headers,
    )
    assert more.status_code == 200, more.text
    changed = await client.post(
        f"{url}/params", json={"params": [{"key": "alpha", "value": "9"}]}, headers=alice.headers
    )
    assert changed.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    tagged = await client.patch(
        f"{url}/tags", json={"tags": [{"key": "team", "value": "ml"}]}, headers=alice.headers
    )
    assert tagged.status_code == 200
    untagged = await client.delete(f"{url}/tags/mlflow.source.type", headers=alice.headers)
    assert untagged.status_code == 200
    again = await client.delete(f"{url}/tags/mlflow.source.type", headers=alice.headers)
    assert again.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"

    finalized = await client.patch(
        url, json={"model_id": model_id, "status": "LOGGED_MODEL_READY"}, headers=alice.headers
    )
    assert finalized.status_code == 200, finalized.text
    assert finalized.json()["model"]["info"]["status"] == "LOGGED_MODEL_READY"

    got = (await client.get(url, headers=alice.headers)).json()["model"]
    assert tags_of(got) == {"team": "ml"}
    assert {p["key"]: p["value"] for p in got["data"]["params"]} == {"alpha": "0.5", "l1": "0.1"}
    rows = await fetch(
        db, "SELECT owner_id, project_id, source_run_id FROM experiments.logged_models"
    )
    assert [(r["owner_id"], str(r["project_id"]), r["source_run_id"].hex) for r in rows] == [
        (alice.id, project, run_id)
    ]

    # deleting is soft
    assert (await client.delete(url, headers=alice.headers)).status_code == 200
    hidden = await client.get(url, headers=alice.headers)
    assert (hidden.status_code, hidden.json()["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")
    kept = await client.get(url, params={"allow_deleted": "true"}, headers=alice.headers)
    assert kept.json()["model"]["info"]["model_id"] == model_id


async def test_model_files_are_artifacts_of_the_source_run(client, alice) -> None:
    project = await new_project(client, alice)
    run = await new_experiment(client, alice, project=project)
    model = await create_model(
        client, alice, experiment_id=project, name="m", source_run_id=uuid.UUID(run["id"]).hex
    )
    model_id = model["info"]["model_id"]
    base = f"{project}/models/{model_id}/artifacts"
    for path, body in (
        ("MLmodel", b"flavors: {}"),
        ("model.pkl", b"p" * 7),
        ("env/conda.yaml", b""),
    ):
        put = await client.put(f"{PROXY}/{base}/{path}", content=body, headers=alice.headers)
        assert put.status_code == 200, put.text
    native = await client.get(f"/api/v1/experiments/{run['id']}/artifacts", headers=alice.headers)
    assert [a["path"] for a in native.json()["items"]] == [
        f"models/{model_id}/MLmodel",
        f"models/{model_id}/env/conda.yaml",
        f"models/{model_id}/model.pkl",
    ]
    listed = await client.get(PROXY, params={"path": base}, headers=alice.headers)
    assert listed.json()["files"] == [
        {"path": "MLmodel", "is_dir": False, "file_size": 11},
        {"path": "env", "is_dir": True},
        {"path": "model.pkl", "is_dir": False, "file_size": 7},
    ]
    got = await client.get(f"{PROXY}/{base}/model.pkl", headers=alice.headers)
    assert got.content == b"p" * 7
    directories = await client.get(
        f"{API}/logged-models/{model_id}/artifacts/directories",
        params={"artifact_directory_path": "env"},
        headers=alice.headers,
    )
    assert directories.json() == {
        "root_uri": f"mlflow-artifacts:/{project}/models/{model_id}/artifacts",
        "files": [{"path": "env/conda.yaml", "is_dir": False, "file_size": 0}],
    }
    # the model's path in another experiment is not the model
    elsewhere = await client.get(
        f"{PROXY}/0/models/{model_id}/artifacts/model.pkl", headers=alice.headers
    )
    assert elsewhere.status_code == 404


async def model_file(client: Any, who: Caller, model_id: str, path: str | None, **headers: str):
    params = {} if path is None else {"artifact_file_path": path}
    return await client.get(
        f"{AJAX}/logged-models/{model_id}/artifacts/files",
        params=params,
        headers={**who.headers, **headers},
    )


async def test_the_ui_downloads_a_models_file_as_an_attachment(mlflow, client, alice) -> None:
    run_id = (await mlflow.new_run(alice))["info"]["run_id"]
    model_id = await mlflow.logged_model_with_file(alice, run_id)
    weights = bytes(range(256)) * 10
    put = await client.put(
        f"{PROXY}/0/models/{model_id}/artifacts/data/model.pkl",
        content=weights,
        headers=alice.headers,
    )
    assert put.status_code == 200, put.text

    got = await model_file(client, alice, model_id, "MLmodel")
    assert (got.status_code, got.content) == (200, b"m")
    assert got.headers["content-type"].startswith("text/plain")
    assert got.headers["content-disposition"].startswith("attachment")
    assert got.headers["x-content-type-options"] == "nosniff"
    nested = await model_file(client, alice, model_id, "data%2Fmodel.pkl")
    assert (nested.status_code, nested.content) == (200, weights)
    assert nested.headers["content-type"] == "application/octet-stream"
    ranged = await model_file(client, alice, model_id, "data/model.pkl", Range="bytes=2-5")
    assert (ranged.status_code, ranged.content) == (206, weights[2:6])
    assert ranged.headers["content-range"] == f"bytes 2-5/{len(weights)}"
    head = await client.head(
        f"{AJAX}/logged-models/{model_id}/artifacts/files",
        params={"artifact_file_path": "data/model.pkl"},
        headers=alice.headers,
    )
    assert (head.status_code, head.content) == (200, b"")
    assert head.headers["content-length"] == str(len(weights))
    # MLflow serves it under /ajax-api only
    client_api = await client.get(
        f"{API}/logged-models/{model_id}/artifacts/files",
        params={"artifact_file_path": "MLmodel"},
        headers=alice.headers,
    )
    assert client_api.status_code == 404


async def test_a_models_file_download_is_refused_as_mlflow_refuses_it(
    mlflow, client, alice, bob
) -> None:
    run_id = (await mlflow.new_run(alice))["info"]["run_id"]
    model_id = await mlflow.logged_model_with_file(alice, run_id)
    put = await client.put(
        f"{PROXY}/0/models/{model_id}/artifacts/data/model.pkl", content=b"p", headers=alice.headers
    )
    assert put.status_code == 200, put.text

    for missing in (None, ""):
        assert_refused(
            await model_file(client, alice, model_id, missing),
            400,
            "BAD_REQUEST",
            'Request must include the "artifact_file_path" query parameter.',
        )
    # checked before the model is looked up
    for unsafe in ("../MLmodel", "/etc/passwd", "a%2F..%2F..%2Fb", "x#y"):
        assert_refused(
            await model_file(client, alice, "m-unknown", unsafe),
            400,
            "INVALID_PARAMETER_VALUE",
            "Invalid path",
        )
    assert_refused(
        await model_file(client, alice, model_id, "absent.bin"), 404, "RESOURCE_DOES_NOT_EXIST"
    )
    assert_refused(
        await model_file(client, alice, model_id, "data"),
        400,
        "INVALID_PARAMETER_VALUE",
        "Artifact path refers to a directory, not a file: 'data'",
    )
    assert_refused(
        await model_file(client, bob, model_id, "MLmodel"), 404, "RESOURCE_DOES_NOT_EXIST"
    )
    assert_refused(
        await model_file(client, alice, "m-0123456789abcdef0123456789abcdef", "MLmodel"),
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )
    unsourced = await create_model(client, alice, experiment_id="0", name="external")
    assert_refused(
        await model_file(client, alice, unsourced["info"]["model_id"], "MLmodel"),
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )
    deleted = await client.delete(f"{API}/logged-models/{model_id}", headers=alice.headers)
    assert deleted.status_code == 200, deleted.text
    assert_refused(
        await model_file(client, alice, model_id, "MLmodel"), 404, "RESOURCE_DOES_NOT_EXIST"
    )


async def test_a_model_made_outside_a_run_keeps_its_own_files(
    client, db, settings, alice, bob, viewer
) -> None:
    """``log_model`` with no active run: the model has no source run, its files are its own
    artifacts (same store, limits, quota and clean-up), and make ``logged_model_artifact.*``
    events."""
    project = await new_project(client, alice)
    model = await create_model(client, alice, experiment_id=project, name="external")
    model_id = model["info"]["model_id"]
    assert "source_run_id" not in model["info"]
    base = f"{project}/models/{model_id}/artifacts"
    weights = bytes(range(256)) * 40
    for path, body in (("MLmodel", b"flavors: {}"), ("model.pkl", weights), ("env/req.txt", b"")):
        put = await client.put(f"{PROXY}/{base}/{path}", content=body, headers=alice.headers)
        assert (put.status_code, put.json()) == (200, {}), put.text
    replaced = await client.put(
        f"{PROXY}/{base}/MLmodel", content=b"flavors: {a: 1}", headers=alice.headers
    )
    assert replaced.status_code == 200

    listed = await client.get(PROXY, params={"path": base}, headers=alice.headers)
    assert listed.json()["files"] == [
        {"path": "MLmodel", "is_dir": False, "file_size": 15},
        {"path": "env", "is_dir": True},
        {"path": "model.pkl", "is_dir": False, "file_size": len(weights)},
    ]
    directories = await client.get(
        f"{API}/logged-models/{model_id}/artifacts/directories", headers=alice.headers
    )
    assert [f["path"] for f in directories.json()["files"]] == ["MLmodel", "env", "model.pkl"]
    got = await client.get(f"{PROXY}/{base}/model.pkl", headers=alice.headers)
    assert got.content == weights
    ranged = await client.get(
        f"{PROXY}/{base}/model.pkl", headers={**alice.headers, "Range": "bytes=256-511"}
    )
    assert (ranged.status_code, ranged.content) == (206, weights[256:512])
    ui = await model_file(client, alice, model_id, "MLmodel")
    assert (ui.status_code, ui.content) == (200, b"flavors: {a: 1}")

    # the model's files belong to no experiment, and are the model owner's to read and write
    rows = await fetch(
        db,
        "SELECT experiment_id, owner_id, path FROM experiments.artifacts"
        " WHERE logged_model_id = $1 ORDER BY path",
        model_id,
    )
    assert [(r["experiment_id"], r["owner_id"], r["path"]) for r in rows] == [
        (None, alice.id, "MLmodel"),
        (None, alice.id, "env/req.txt"),
        (None, alice.id, "model.pkl"),
    ]
    stolen = await client.get(f"{PROXY}/{base}/model.pkl", headers=bob.headers)
    assert (stolen.status_code, stolen.json()["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")
    overwrite = await client.put(f"{PROXY}/{base}/model.pkl", content=b"b", headers=bob.headers)
    assert overwrite.status_code == 404
    seen = await client.get(f"{PROXY}/{base}/model.pkl", headers=viewer.headers)
    assert seen.content == weights
    refused = await client.put(f"{PROXY}/{base}/x.txt", content=b"v", headers=viewer.headers)
    assert (refused.status_code, refused.json()["error_code"]) == (403, "PERMISSION_DENIED")

    created = [e for e in await outbox(db) if e["type"] == "logged_model_artifact.created"]
    assert [(e["subject"], e["data"]["path"], e["data"]["replaced"]) for e in created] == [
        (model_id, "MLmodel", False),
        (model_id, "model.pkl", False),
        (model_id, "env/req.txt", False),
        (model_id, "MLmodel", True),
    ]
    assert created[1]["data"]["logged_model_id"] == model_id
    assert created[1]["data"]["owner_id"] == str(alice.id)
    assert created[1]["data"]["size"] == len(weights)
    assert not [e for e in await outbox(db) if e["type"] == "artifact.created"]

    # deleting a folder, then the rest
    assert (await client.delete(f"{PROXY}/{base}/env", headers=alice.headers)).status_code == 200
    assert (await client.delete(f"{PROXY}/{base}", headers=bob.headers)).status_code == 404
    assert (await client.delete(f"{PROXY}/{base}", headers=alice.headers)).status_code == 200
    empty = await client.get(PROXY, params={"path": base}, headers=alice.headers)
    assert empty.json().get("files", []) == []
    gone = [e for e in await outbox(db) if e["type"] == "logged_model_artifact.deleted"]
    assert sorted(e["data"]["path"] for e in gone) == ["MLmodel", "env/req.txt", "model.pkl"]


async def test_a_models_own_files_count_against_its_owners_quota(settings, alice) -> None:
    limited = settings.model_copy(update={"artifact_user_quota_bytes": 10})
    async with running_app(with_mlflow_routes(create_app(limited))) as client:
        run = await new_experiment(client, alice)
        put = await client.put(
            f"{PROXY}/0/{uuid.UUID(run['id']).hex}/artifacts/a.bin",
            content=b"r" * 6,
            headers=alice.headers,
        )
        assert put.status_code == 200, put.text
        model = await create_model(client, alice, experiment_id="0", name="external")
        base = f"0/models/{model['info']['model_id']}/artifacts"
        over = await client.put(f"{PROXY}/{base}/w.bin", content=b"m" * 5, headers=alice.headers)
        assert (over.status_code, over.json()["error_code"]) == (413, "RESOURCE_LIMIT_EXCEEDED")
        fits = await client.put(f"{PROXY}/{base}/w.bin", content=b"m" * 4, headers=alice.headers)
        assert fits.status_code == 200, fits.text


async def test_creation_is_checked(client, alice, bob, viewer) -> None:
    project = await new_project(client, alice)
    run = await new_experiment(client, alice)  # experiment "0", not the project
    wrong_experiment = await client.post(
        f"{API}/logged-models",
        json={"experiment_id": project, "source_run_id": uuid.UUID(run["id"]).hex},
        headers=alice.headers,
    )
    assert wrong_experiment.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    for bad in ("a/b", "a.b", ""):
        named = await client.post(
            f"{API}/logged-models", json={"experiment_id": "0", "name": bad}, headers=alice.headers
        )
        assert named.json()["error_code"] == "INVALID_PARAMETER_VALUE", bad
    others = await client.post(
        f"{API}/logged-models", json={"experiment_id": project}, headers=bob.headers
    )
    assert (others.status_code, others.json()["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")
    viewing = await client.post(
        f"{API}/logged-models", json={"experiment_id": "0"}, headers=viewer.headers
    )
    assert (viewing.status_code, viewing.json()["error_code"]) == (403, "PERMISSION_DENIED")
    mine = await create_model(client, alice, experiment_id="0")
    assert mine["info"]["name"].startswith("model-")
    read_by_bob = await client.get(
        f"{API}/logged-models/{mine['info']['model_id']}", headers=bob.headers
    )
    assert read_by_bob.status_code == 404


async def test_search(client, alice, bob) -> None:
    project = await new_project(client, alice)
    run = await new_experiment(client, alice, project=project)
    run_id = uuid.UUID(run["id"]).hex
    ids = {}
    for name, alpha in (("ridge", "0.1"), ("lasso", "0.5"), ("ridge2", "1.0")):
        model = await create_model(
            client,
            alice,
            experiment_id=project,
            name=name,
            source_run_id=run_id,
            params=[{"key": "alpha", "value": alpha}],
        )
        ids[name] = model["info"]["model_id"]
    await client.patch(
        f"{API}/logged-models/{ids['lasso']}",
        json={"status": "LOGGED_MODEL_READY"},
        headers=alice.headers,
    )
    await create_model(client, alice, experiment_id="0", name="ridge")  # another experiment
    await create_model(client, bob, experiment_id="0", name="ridge")  # another user

    async def names(**body: Any) -> list[str]:
        response = await client.post(
            f"{API}/logged-models/search",
            json={"experiment_ids": [project], **body},
            headers=alice.headers,
        )
        assert response.status_code == 200, response.text
        return [m["info"]["name"] for m in response.json().get("models", [])]

    assert await names() == ["ridge2", "lasso", "ridge"]  # newest first
    assert await names(filter="name = 'ridge'") == ["ridge"]
    assert await names(filter="name LIKE 'ridge%'") == ["ridge2", "ridge"]
    assert await names(filter="params.alpha != '0.1' AND status = 'LOGGED_MODEL_PENDING'") == [
        "ridge2"
    ]
    assert await names(filter=f"source_run_id = '{run_id}'") == ["ridge2", "lasso", "ridge"]
    assert await names(filter="name IN ('lasso', 'ridge')") == ["lasso", "ridge"]
    assert await names(order_by=[{"field_name": "name", "ascending": True}]) == [
        "lasso",
        "ridge",
        "ridge2",
    ]
    default = await client.post(
        f"{API}/logged-models/search", json={"experiment_ids": ["0"]}, headers=alice.headers
    )
    assert [m["info"]["name"] for m in default.json()["models"]] == ["ridge"]

    first = await client.post(
        f"{API}/logged-models/search",
        json={"experiment_ids": [project], "max_results": 2},
        headers=alice.headers,
    )
    page = first.json()
    assert [m["info"]["name"] for m in page["models"]] == ["ridge2", "lasso"]
    rest = await client.post(
        f"{API}/logged-models/search",
        json={"experiment_ids": [project], "max_results": 2, "page_token": page["next_page_token"]},
        headers=alice.headers,
    )
    assert [m["info"]["name"] for m in rest.json()["models"]] == ["ridge"]
    assert "next_page_token" not in rest.json()

    bad = await client.post(
        f"{API}/logged-models/search",
        json={"experiment_ids": [project], "filter": "name = 'x' OR name = 'y'"},
        headers=alice.headers,
    )
    assert (bad.status_code, bad.json()["error_code"]) == (400, "INVALID_PARAMETER_VALUE")
    hidden = await client.post(
        f"{API}/logged-models/search", json={"experiment_ids": [project]}, headers=bob.headers
    )
    assert hidden.json().get("models", []) == []


async def test_metrics_logged_with_a_model_id_are_the_models(client, settings, alice) -> None:
    """What the runs API hands over when a metric carries a ``model_id`` (MLflow 3 logs a
    model's metrics so): kept per (key, step, dataset), searchable and sortable."""
    from runyard.experiments.mlflow import logged_models
    from runyard.experiments.models import Experiment
    from runyard.shared.db import create_engine, create_sessionmaker
    from runyard.shared.identity import Principal

    run = await new_experiment(client, alice)
    run_id = uuid.UUID(run["id"]).hex
    good = await create_model(client, alice, experiment_id="0", name="good", source_run_id=run_id)
    bad = await create_model(client, alice, experiment_id="0", name="bad", source_run_id=run_id)
    await create_model(client, alice, experiment_id="0", name="unmeasured")
    principal = Principal(user_id=alice.id, role="user")
    engine = create_engine(settings.database_url, pool_size=1)
    try:
        sessions = create_sessionmaker(engine, schema="experiments")
        async with sessions() as session, session.begin():
            experiment = await session.get(Experiment, uuid.UUID(run["id"]))
            assert experiment is not None
            good_id, bad_id = good["info"]["model_id"], bad["info"]["model_id"]
            metrics = [
                {"key": "rmse", "value": 0.9, "step": 0, "timestamp": 1, "model_id": good_id},
                {"key": "rmse", "value": 0.4, "step": 1, "timestamp": 2, "model_id": good_id},
                {"key": "rmse", "value": 0.8, "step": 0, "timestamp": 1, "model_id": bad_id},
                {
                    "key": "rmse",
                    "value": float("nan"),
                    "step": 1,
                    "timestamp": 0,
                    "model_id": bad_id,
                    "dataset_name": "eval",
                },
                {"key": "unrelated", "value": 1.0, "step": 0},
            ]
            await logged_models.record_metrics(session, principal, experiment, metrics)
            # the same (key, step) again replaces the value
            await logged_models.record_metrics(
                session,
                principal,
                experiment,
                [
                    {
                        "key": "rmse",
                        "value": 0.3,
                        "step": 1,
                        "timestamp": 3,
                        "model_id": good["info"]["model_id"],
                    }
                ],
            )
    finally:
        await engine.dispose()

    got = await client.get(f"{API}/logged-models/{good['info']['model_id']}", headers=alice.headers)
    metrics_of_good = got.json()["model"]["data"]["metrics"]
    assert sorted((m["key"], m["step"], m["value"]) for m in metrics_of_good) == [
        ("rmse", 0, 0.9),
        ("rmse", 1, 0.3),
    ]
    assert {m["run_id"] for m in metrics_of_good} == {run_id}

    async def names(**body: Any) -> list[str]:
        response = await client.post(
            f"{API}/logged-models/search",
            json={"experiment_ids": ["0"], **body},
            headers=alice.headers,
        )
        assert response.status_code == 200, response.text
        return [m["info"]["name"] for m in response.json().get("models", [])]

    assert await names(filter="metrics.rmse < 0.5") == ["good"]
    assert await names(order_by=[{"field_name": "metrics.rmse", "ascending": True}]) == [
        "good",
        "bad",
        "unmeasured",
    ]
    assert await names(datasets=[{"dataset_name": "eval"}]) == ["bad"]
