"""MLflow's Model Registry over the service's HTTP API: registered models (create, get,
rename, update, tags, search, delete), model versions from a run's artifacts and from a logged
model (create, get, update, tags, search, delete, download URI, stages), aliases, and the
errors the stock client expects."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from services.experiments.tests.experiments_helpers import Caller, outbox

API = "/api/2.0/mlflow"
PROXY = "/api/2.0/mlflow-artifacts/artifacts"


async def upload_run_file(client: Any, who: Caller, run: dict[str, Any], path: str, data: bytes):
    experiment_id = run["info"]["experiment_id"]
    put = await client.put(
        f"{PROXY}/{experiment_id}/{run['info']['run_id']}/artifacts/{path}",
        content=data,
        headers=who.headers,
    )
    assert put.status_code == 200, put.text


async def delete(client: Any, who: Caller, path: str, body: dict[str, Any]) -> Any:
    return await client.request("DELETE", f"{API}/{path}", json=body, headers=who.headers)


async def test_register_a_run_model_with_aliases(client, db, mlflow, alice, bob) -> None:
    run = await mlflow.new_run(alice)
    run_id = run["info"]["run_id"]
    await upload_run_file(client, alice, run, "model/MLmodel", b"flavors: {}")
    await upload_run_file(client, alice, run, "model/model.pkl", b"pickle" * 10)

    created = await mlflow.ok(
        alice,
        "registered-models/create",
        {"name": "pump-cnn", "description": "d", "tags": [{"key": "team", "value": "ml"}]},
    )
    model = created["registered_model"]
    assert (model["name"], model["description"], model["tags"]) == (
        "pump-cnn",
        "d",
        [{"key": "team", "value": "ml"}],
    )
    again = await mlflow.error(alice, "registered-models/create", {"name": "pump-cnn"})
    assert again == (400, "RESOURCE_ALREADY_EXISTS")
    # another user's namespace is their own
    await mlflow.ok(bob, "registered-models/create", {"name": "pump-cnn"})

    v1 = (
        await mlflow.ok(
            alice,
            "model-versions/create",
            {"name": "pump-cnn", "source": f"runs:/{run_id}/model", "run_id": run_id},
        )
    )["model_version"]
    assert (v1["version"], v1["status"], v1["run_id"], v1["current_stage"]) == (
        "1",
        "READY",
        run_id,
        "None",
    )
    source = f"mlflow-artifacts:/0/{run_id}/artifacts/model"
    v2 = (
        await mlflow.ok(
            alice, "model-versions/create", {"name": "pump-cnn", "source": source, "run_id": run_id}
        )
    )["model_version"]
    assert (v2["version"], v2["status"], v2["source"]) == ("2", "READY", source)
    missing = (
        await mlflow.ok(
            alice, "model-versions/create", {"name": "pump-cnn", "source": f"runs:/{run_id}/x"}
        )
    )["model_version"]
    assert missing["status"] == "PENDING_REGISTRATION"  # the run is still running
    assert await mlflow.error(
        alice, "model-versions/create", {"name": "pump-cnn", "source": "file:///tmp/model"}
    ) == (400, "INVALID_PARAMETER_VALUE")
    assert await mlflow.error(
        alice, "model-versions/create", {"name": "nope", "source": f"runs:/{run_id}/model"}
    ) == (404, "RESOURCE_DOES_NOT_EXIST")
    # aliases: set, move, get by alias, delete
    alias = {"name": "pump-cnn", "alias": "champion"}
    await mlflow.ok(alice, "registered-models/alias", {**alias, "version": "1"})
    await mlflow.ok(alice, "registered-models/alias", {**alias, "version": "2"})
    by_alias = await mlflow.ok(alice, "registered-models/alias", params=alias)
    assert (by_alias["model_version"]["version"], by_alias["model_version"]["aliases"]) == (
        "2",
        ["champion"],
    )
    got = (await mlflow.ok(alice, "registered-models/get", params={"name": "pump-cnn"}))[
        "registered_model"
    ]
    assert got["aliases"] == [{"alias": "champion", "version": "2"}]
    assert [v["version"] for v in got["latest_versions"]] == ["3"]
    assert await mlflow.error(
        alice, "registered-models/alias", {**alias, "alias": "latest", "version": "1"}
    ) == (400, "INVALID_PARAMETER_VALUE")
    assert await mlflow.error(alice, "registered-models/alias", {**alias, "version": "9"}) == (
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )
    # a version holding an alias is not deleted
    held = await delete(client, alice, "model-versions/delete", {"name": "pump-cnn", "version": 2})
    assert (held.status_code, held.json()["error_code"]) == (409, "INVALID_STATE")
    gone = await delete(client, alice, "registered-models/alias", alias)
    assert gone.status_code == 200
    assert await mlflow.error(alice, "registered-models/alias", params=alias) == (
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )
    deleted = await delete(
        client, alice, "model-versions/delete", {"name": "pump-cnn", "version": 2}
    )
    assert deleted.status_code == 200
    assert await mlflow.error(
        alice, "model-versions/get", params={"name": "pump-cnn", "version": "2"}
    ) == (404, "RESOURCE_DOES_NOT_EXIST")
    assert await mlflow.error(
        alice, "model-versions/get", params={"name": "pump-cnn", "version": "x"}
    ) == (400, "INVALID_PARAMETER_VALUE")

    uri = await mlflow.ok(
        alice, "model-versions/get-download-uri", params={"name": "pump-cnn", "version": "1"}
    )
    assert uri["artifact_uri"] == f"mlflow-artifacts:/0/{run_id}/artifacts/model"

    types = [e["type"] for e in await outbox(db) if e["type"].startswith("model")]
    assert types == [
        "model.registered",
        "model.registered",
        "model_version.created",
        "model_version.created",
        "model_version.created",
        "model_version.alias_set",
        "model_version.alias_set",
        "model_version.alias_removed",
    ]


async def test_a_source_path_with_dot_names_is_resolved_as_mlflow_does(
    client, mlflow, alice
) -> None:
    """``<artifact_uri>/.`` names the directory itself, ``<artifact_uri>/model/..`` the run's
    root (MLflow accepts both); a path that leaves the run's artifacts is refused."""
    run = await mlflow.new_run(alice)
    run_id = run["info"]["run_id"]
    await upload_run_file(client, alice, run, "model/MLmodel", b"flavors: {}")
    await mlflow.ok(alice, "registered-models/create", {"name": "dots"})
    root = f"mlflow-artifacts:/0/{run_id}/artifacts"
    expected = {
        f"{root}/model/.": f"{root}/model",
        f"{root}/model/./": f"{root}/model",
        f"{root}//model": f"{root}/model",
        f"{root}/model/..": root,
        f"{root}/.": root,
        f"runs:/{run_id}/model/../model": f"{root}/model",
    }
    for version, (source, uri) in enumerate(expected.items(), start=1):
        created = await mlflow.ok(
            alice, "model-versions/create", {"name": "dots", "source": source, "run_id": run_id}
        )
        assert created["model_version"]["source"] == source  # kept as given, as MLflow keeps it
        download = await mlflow.ok(
            alice,
            "model-versions/get-download-uri",
            params={"name": "dots", "version": str(version)},
        )
        assert download["artifact_uri"] == uri, source
    for outside in (f"{root}/model/../..", f"{root}/..", f"runs:/{run_id}/../other"):
        assert await mlflow.error(
            alice, "model-versions/create", {"name": "dots", "source": outside, "run_id": run_id}
        ) == (400, "INVALID_PARAMETER_VALUE"), outside
    listed = await mlflow.ok(alice, "registered-models/get", params={"name": "dots"})
    assert [v["version"] for v in listed["registered_model"]["latest_versions"]] == [
        str(len(expected))
    ]


async def test_a_logged_models_version(client, mlflow, alice) -> None:
    run = await mlflow.new_run(alice)
    run_id = run["info"]["run_id"]
    model_id = await mlflow.logged_model_with_file(alice, run_id)
    await mlflow.ok(alice, "registered-models/create", {"name": "m"})
    version = (
        await mlflow.ok(
            alice,
            "model-versions/create",
            {"name": "m", "source": f"models:/{model_id}", "run_id": run_id, "model_id": model_id},
        )
    )["model_version"]
    assert (version["status"], version["model_id"], version["run_id"]) == (
        "READY",
        model_id,
        run_id,
    )
    await mlflow.ok(
        alice,
        "model-versions/create",
        {"name": "m", "source": f"models:/{model_id}", "run_id": run_id, "model_id": model_id},
    )
    logged = await client.get(f"{API}/logged-models/{model_id}", headers=alice.headers)
    tags = {t["key"]: t["value"] for t in logged.json()["model"]["info"]["tags"]}
    assert json.loads(tags["mlflow.modelVersions"]) == [
        {"name": "m", "version": 1},
        {"name": "m", "version": 2},
    ]
    uri = await mlflow.ok(
        alice, "model-versions/get-download-uri", params={"name": "m", "version": "1"}
    )
    assert uri["artifact_uri"] == f"mlflow-artifacts:/0/models/{model_id}/artifacts"
    rows = (await client.get("/api/v1/models", params={"name": "m"}, headers=alice.headers)).json()
    versions = await client.get(
        f"/api/v1/models/{rows['items'][0]['id']}/versions/1", headers=alice.headers
    )
    assert (
        versions.json()["sha256"]
        == hashlib.sha256(f"{hashlib.sha256(b'm').hexdigest()}  MLmodel\n".encode()).hexdigest()
    )


async def test_a_version_of_a_logged_model_made_outside_a_run(
    client, db, mlflow, alice, bob
) -> None:
    """``register_model("models:/<id>")`` for a model with no source run: the version is the
    model's own files; pending while the model is, settled when it is finalized."""

    async def standalone(name: str) -> str:
        logged = await client.post(
            f"{API}/logged-models",
            json={"experiment_id": "0", "name": name},
            headers=alice.headers,
        )
        model_id: str = logged.json()["model"]["info"]["model_id"]
        return model_id

    async def upload(model_id: str, path: str, data: bytes) -> None:
        put = await client.put(
            f"{PROXY}/0/models/{model_id}/artifacts/{path}", content=data, headers=alice.headers
        )
        assert put.status_code == 200, put.text

    async def finalize(model_id: str, status: str) -> None:
        done = await client.patch(
            f"{API}/logged-models/{model_id}",
            json={"model_id": model_id, "status": status},
            headers=alice.headers,
        )
        assert done.status_code == 200, done.text

    async def register(model_id: str) -> dict[str, Any]:
        created = await mlflow.ok(
            alice,
            "model-versions/create",
            {"name": "m", "source": f"models:/{model_id}", "model_id": model_id},
        )
        version: dict[str, Any] = created["model_version"]
        return version

    async def status(number: str) -> str:
        got = await mlflow.ok(alice, "model-versions/get", params={"name": "m", "version": number})
        found: str = got["model_version"]["status"]
        return found

    await mlflow.ok(alice, "registered-models/create", {"name": "m"})
    ready = await standalone("ready")
    await upload(ready, "MLmodel", b"flavors: {}")
    await upload(ready, "data/model.pkl", b"w" * 100)
    await finalize(ready, "LOGGED_MODEL_READY")
    first = await register(ready)
    assert (first["version"], first["status"], first["model_id"]) == ("1", "READY", ready)
    assert "run_id" not in first
    uri = await mlflow.ok(
        alice, "model-versions/get-download-uri", params={"name": "m", "version": "1"}
    )
    assert uri["artifact_uri"] == f"mlflow-artifacts:/0/models/{ready}/artifacts"
    got = await client.get(
        "/model-versions/get-artifact",
        params={"name": "m", "version": "1", "path": "data/model.pkl"},
        headers=alice.headers,
    )
    assert (got.status_code, got.content) == (200, b"w" * 100)

    # Runyard's own API: no experiment, the model's files hashed as a folder's
    [model] = (
        await client.get("/api/v1/models", params={"name": "m"}, headers=alice.headers)
    ).json()["items"]
    own = (
        await client.get(f"/api/v1/models/{model['id']}/versions/1", headers=alice.headers)
    ).json()
    assert (own["experiment_id"], own["logged_model_id"], own["artifact_path"]) == (None, ready, "")
    manifest = (
        f"{hashlib.sha256(b'flavors: {}').hexdigest()}  MLmodel\n"
        f"{hashlib.sha256(b'w' * 100).hexdigest()}  data/model.pkl\n"
    )
    assert (own["size"], own["file_count"]) == (111, 2)
    assert own["sha256"] == hashlib.sha256(manifest.encode()).hexdigest()
    [event] = [e for e in await outbox(db) if e["type"] == "model_version.created"]
    assert (event["data"]["logged_model_id"], event["data"]["experiment_id"]) == (ready, None)

    # registered while its files are being uploaded: pending until the model is finalized
    uploading = await standalone("uploading")
    assert (await register(uploading))["status"] == "PENDING_REGISTRATION"
    await upload(uploading, "MLmodel", b"x")
    assert await status("2") == "PENDING_REGISTRATION"
    await finalize(uploading, "LOGGED_MODEL_READY")
    assert await status("2") == "READY"
    broken = await standalone("broken")
    assert (await register(broken))["status"] == "PENDING_REGISTRATION"
    await finalize(broken, "LOGGED_MODEL_UPLOAD_FAILED")
    assert await status("3") == "FAILED_REGISTRATION"
    # an external model (mlflow.create_external_model): READY, no files, registered as it is
    external = await standalone("external")
    await finalize(external, "LOGGED_MODEL_READY")
    assert (await register(external))["status"] == "READY"
    four = await client.get(f"/api/v1/models/{model['id']}/versions/4", headers=alice.headers)
    empty = hashlib.sha256(b"").hexdigest()
    assert (four.json()["size"], four.json()["file_count"], four.json()["sha256"]) == (0, 0, empty)

    # another user's model is not there to register
    await mlflow.ok(bob, "registered-models/create", {"name": "m"})
    refused = await mlflow.error(
        bob, "model-versions/create", {"name": "m", "source": f"models:/{ready}"}
    )
    assert refused == (404, "RESOURCE_DOES_NOT_EXIST")


async def test_search_rename_tags_and_stages(client, mlflow, alice) -> None:
    run = await mlflow.new_run(alice)
    run_id = run["info"]["run_id"]
    await upload_run_file(client, alice, run, "model/MLmodel", b"x")
    for name, team in (("pump-cnn", "ml"), ("pump-lstm", "ops"), ("bearing", "ml")):
        await mlflow.ok(
            alice,
            "registered-models/create",
            {"name": name, "tags": [{"key": "team", "value": team}]},
        )
        await mlflow.ok(
            alice, "model-versions/create", {"name": name, "source": f"runs:/{run_id}/model"}
        )

    async def names(**params) -> list[str]:
        found = await mlflow.ok(alice, "registered-models/search", params=params)
        return [m["name"] for m in found["registered_models"]]

    assert await names() == ["bearing", "pump-cnn", "pump-lstm"]
    assert await names(filter="name LIKE 'pump%'") == ["pump-cnn", "pump-lstm"]
    assert await names(filter="name ILIKE '%CNN'") == ["pump-cnn"]
    assert await names(filter="tags.team = 'ml'") == ["bearing", "pump-cnn"]
    assert await names(filter="name = 'bearing' AND tags.team = 'ml'") == ["bearing"]
    assert await names(order_by=["name DESC"]) == ["pump-lstm", "pump-cnn", "bearing"]
    # what the stock client adds to every search: models without the tag are kept
    assert await names(filter="name LIKE 'pump%' AND tag.`mlflow.prompt.is_prompt` != 'true'") == [
        "pump-cnn",
        "pump-lstm",
    ]
    first = await mlflow.ok(alice, "registered-models/search", params={"max_results": 2})
    rest = await mlflow.ok(
        alice,
        "registered-models/search",
        params={"max_results": 2, "page_token": first["next_page_token"]},
    )
    assert [m["name"] for m in rest["registered_models"]] == ["pump-lstm"]
    assert "next_page_token" not in rest
    assert await mlflow.error(alice, "registered-models/search", params={"filter": "foo = 1"}) == (
        400,
        "INVALID_PARAMETER_VALUE",
    )

    versions = await mlflow.ok(
        alice, "model-versions/search", params={"filter": f"run_id = '{run_id}'"}
    )
    assert [(v["name"], v["version"]) for v in versions["model_versions"]] == [
        ("bearing", "1"),
        ("pump-cnn", "1"),
        ("pump-lstm", "1"),
    ]
    one = await mlflow.ok(alice, "model-versions/search", params={"filter": "name = 'bearing'"})
    assert len(one["model_versions"]) == 1

    renamed = await mlflow.ok(
        alice, "registered-models/rename", {"name": "bearing", "new_name": "bearing-2"}
    )
    assert renamed["registered_model"]["name"] == "bearing-2"
    assert await mlflow.error(
        alice, "registered-models/rename", {"name": "bearing-2", "new_name": "pump-cnn"}
    ) == (400, "RESOURCE_ALREADY_EXISTS")
    client_patch = await client.patch(
        f"{API}/registered-models/update",
        json={"name": "bearing-2", "description": "new"},
        headers=alice.headers,
    )
    assert client_patch.json()["registered_model"]["description"] == "new"

    await mlflow.ok(
        alice, "registered-models/set-tag", {"name": "pump-cnn", "key": "k", "value": "v"}
    )
    await mlflow.ok(
        alice,
        "model-versions/set-tag",
        {"name": "pump-cnn", "version": "1", "key": "k", "value": "v"},
    )
    got = await mlflow.ok(alice, "model-versions/get", params={"name": "pump-cnn", "version": 1})
    assert got["model_version"]["tags"] == [{"key": "k", "value": "v"}]
    removed = await delete(
        client, alice, "model-versions/delete-tag", {"name": "pump-cnn", "version": "1", "key": "k"}
    )
    assert removed.status_code == 200
    await delete(client, alice, "registered-models/delete-tag", {"name": "pump-cnn", "key": "k"})
    model = await mlflow.ok(alice, "registered-models/get", params={"name": "pump-cnn"})
    assert model["registered_model"]["tags"] == [{"key": "team", "value": "ml"}]

    # stages: only Archived, which archives the version
    assert await mlflow.error(
        alice,
        "model-versions/transition-stage",
        {"name": "pump-cnn", "version": "1", "stage": "Production"},
    ) == (400, "INVALID_PARAMETER_VALUE")
    archived = await mlflow.ok(
        alice,
        "model-versions/transition-stage",
        {"name": "pump-cnn", "version": "1", "stage": "Archived"},
    )
    assert archived["model_version"]["current_stage"] == "Archived"
    latest = await mlflow.ok(
        alice, "registered-models/get-latest-versions", {"name": "pump-cnn", "stages": ["None"]}
    )
    assert latest["model_versions"] == []

    assert (
        await delete(client, alice, "registered-models/delete", {"name": "pump-cnn"})
    ).status_code == 200
    assert await mlflow.error(alice, "registered-models/get", params={"name": "pump-cnn"}) == (
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )
