"""The three endpoints the MLflow UI uses besides the client's API: dataset search
(``experiments/search-datasets``), the UI's upload (``upload-artifact``) and ``get-artifact``,
over the same run inputs and the same artifact store as the rest of the MLflow API."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

from runyard.experiments.config import Settings
from runyard.experiments.main import create_app
from runyard.shared.testing import running_app
from services.experiments.tests.experiments_helpers import Caller, outbox
from services.experiments.tests.mlflow.conftest import Mlflow, assert_refused

AJAX = "/ajax-api/2.0/mlflow"
UPLOAD = f"{AJAX}/upload-artifact"
GET_ARTIFACT = "/get-artifact"
MB = 1024 * 1024


def context(value: str) -> dict[str, str]:
    return {"key": "mlflow.data.context", "value": value}


def dataset_input(name: str, digest: str, *tags: dict[str, str]) -> dict[str, Any]:
    return {
        "dataset": {"name": name, "digest": digest, "source_type": "local", "source": "{}"},
        "tags": list(tags),
    }


async def log_inputs(mlflow: Mlflow, who: Caller, run_id: str, *inputs: dict[str, Any]) -> None:
    await mlflow.ok(who, "runs/log-inputs", {"run_id": run_id, "datasets": list(inputs)})


async def search_datasets(client: Any, who: Caller, body: Any, prefix: str = AJAX) -> Any:
    return await client.post(
        f"{prefix}/experiments/search-datasets", json=body, headers=who.headers
    )


# --- search-datasets ---------------------------------------------------------------------------


async def test_search_datasets_lists_each_name_digest_and_context_once_per_experiment(
    mlflow, client, alice
) -> None:
    vision = await mlflow.new_experiment(alice, "vision")
    audio = await mlflow.new_experiment(alice, "audio")
    first = (await mlflow.new_run(alice, vision))["info"]["run_id"]
    second = (await mlflow.new_run(alice, vision))["info"]["run_id"]
    other = (await mlflow.new_run(alice, audio))["info"]["run_id"]
    default = (await mlflow.new_run(alice))["info"]["run_id"]
    await log_inputs(
        mlflow,
        alice,
        first,
        dataset_input("mnist", "d1", context("training"), {"key": "split", "value": "a"}),
        dataset_input("cifar", "d2"),
    )
    await log_inputs(mlflow, alice, second, dataset_input("mnist", "d1", context("eval")))
    await log_inputs(mlflow, alice, other, dataset_input("speech", "d3", context("training")))
    await log_inputs(mlflow, alice, default, dataset_input("mine", "d4", context("test")))
    # the same dataset in the same context from another run is no new summary; a deleted
    # run's datasets still count (MLflow keeps an experiment's datasets)
    again = (await mlflow.new_run(alice, vision))["info"]["run_id"]
    await log_inputs(mlflow, alice, again, dataset_input("mnist", "d1", context("training")))
    await mlflow.ok(alice, "runs/delete", {"run_id": second})

    response = await search_datasets(client, alice, {"experiment_ids": [vision]})
    assert response.status_code == 200, response.text
    assert response.json() == {
        "dataset_summaries": [
            {"experiment_id": vision, "name": "cifar", "digest": "d2"},
            {"experiment_id": vision, "name": "mnist", "digest": "d1", "context": "eval"},
            {"experiment_id": vision, "name": "mnist", "digest": "d1", "context": "training"},
        ]
    }
    everything = await search_datasets(client, alice, {"experiment_ids": [audio, "0"]})
    assert sorted(
        (s["experiment_id"], s["name"], s.get("context"))
        for s in everything.json()["dataset_summaries"]
    ) == sorted([(audio, "speech", "training"), ("0", "mine", "test")])
    # the client's prefix answers too
    same = await search_datasets(client, alice, {"experiment_ids": [vision]}, "/api/2.0/mlflow")
    assert same.json() == response.json()
    # an experiment without datasets: MLflow's empty message
    empty = await mlflow.new_experiment(alice, "empty")
    nothing = await search_datasets(client, alice, {"experiment_ids": [empty]})
    assert (nothing.status_code, nothing.json()) == (200, {})


async def test_search_datasets_refuses_what_mlflow_refuses_in_its_words(client, alice) -> None:
    for body in ({}, {"experiment_ids": []}, {"experiment_ids": "0"}, ["0"]):
        response = await search_datasets(client, alice, body)
        assert_refused(
            response,
            400,
            "INVALID_PARAMETER_VALUE",
            "SearchDatasets request must specify at least one experiment_id.",
        )
    for count in (21, 1000):
        response = await search_datasets(
            client, alice, {"experiment_ids": [f"id_{i}" for i in range(count)]}
        )
        message = assert_refused(response, 400, "INVALID_PARAMETER_VALUE")
        assert message == (
            "SearchDatasets request cannot specify more than 20 experiment_ids. "
            f"Received {count} experiment_ids."
        )
    malformed = await search_datasets(client, alice, {"experiment_ids": ["id_1"]})
    assert_refused(malformed, 400, "INVALID_PARAMETER_VALUE", "id_1")
    url = f"{AJAX}/experiments/search-datasets"
    not_json = await client.post(url, content=b"{oops", headers=alice.headers)
    assert_refused(not_json, 400, "INVALID_PARAMETER_VALUE", "Content-Type header is missing")
    wrong_type = await client.post(
        url, content=b"x", headers={**alice.headers, "Content-Type": "text/plain"}
    )
    assert_refused(wrong_type, 400, "INVALID_PARAMETER_VALUE", "Content-Type must be one of")
    garbled = await client.post(
        url, content=b"{oops", headers={**alice.headers, "Content-Type": "application/json"}
    )
    assert_refused(garbled, 400, "INVALID_PARAMETER_VALUE", "at least one experiment_id")


async def test_search_datasets_leaves_out_experiments_the_caller_may_not_read(
    mlflow, client, alice, bob, viewer
) -> None:
    project = await mlflow.new_experiment(alice, "private")
    run_id = (await mlflow.new_run(alice, project))["info"]["run_id"]
    await log_inputs(mlflow, alice, run_id, dataset_input("secret", "d1"))
    await log_inputs(
        mlflow, alice, (await mlflow.new_run(alice))["info"]["run_id"], dataset_input("mine", "d2")
    )
    stranger = await search_datasets(client, bob, {"experiment_ids": [project, "0"]})
    assert (stranger.status_code, stranger.json()) == (200, {})
    seen = await search_datasets(client, viewer, {"experiment_ids": [project]})
    assert [s["name"] for s in seen.json()["dataset_summaries"]] == ["secret"]


# --- upload-artifact and get-artifact ----------------------------------------------------------


async def upload(client: Any, who: Caller, run_id: str, path: str, content: Any) -> Any:
    return await client.post(
        UPLOAD, params={"run_uuid": run_id, "path": path}, content=content, headers=who.headers
    )


async def test_the_uis_upload_is_a_run_artifact_that_get_artifact_streams_back(
    mlflow, client, db, alice
) -> None:
    experiment = await mlflow.new_experiment(alice, "ui")
    run = await mlflow.new_run(alice, experiment)
    run_id = run["info"]["run_id"]
    stored = await upload(client, alice, run_id, "notes/hello.txt", b"hello world")
    assert stored.status_code == 200, stored.text
    assert stored.headers["content-type"] == "application/json"
    assert stored.content == b""
    # a Runyard artifact of the experiment behind the run, announced as any upload is
    native = await client.get(
        f"/api/v1/experiments/{uuid.UUID(run_id)}/artifacts", headers=alice.headers
    )
    assert [(a["path"], a["size"]) for a in native.json()["items"]] == [("notes/hello.txt", 11)]
    [created] = [e for e in await outbox(db) if e["type"] == "artifact.created"]
    assert (created["data"]["path"], created["data"]["replaced"]) == ("notes/hello.txt", False)
    listed = await mlflow.ok(alice, "artifacts/list", params={"run_id": run_id, "path": "notes"})
    assert listed["files"] == [{"path": "notes/hello.txt", "is_dir": False, "file_size": 11}]

    for url in (GET_ARTIFACT, f"{AJAX}/get-artifact"):
        for key in ("run_uuid", "run_id"):
            got = await client.get(
                url, params={key: run_id, "path": "notes/hello.txt"}, headers=alice.headers
            )
            assert got.status_code == 200, got.text
            assert got.content == b"hello world"
            assert got.headers["content-type"].startswith("text/plain")
            assert got.headers["content-disposition"].startswith("attachment")
            assert got.headers["x-content-type-options"] == "nosniff"
    ranged = await client.get(
        GET_ARTIFACT,
        params={"run_uuid": run_id, "path": "notes/hello.txt"},
        headers={**alice.headers, "Range": "bytes=6-10"},
    )
    assert (ranged.status_code, ranged.content) == (206, b"world")

    # a second upload to the path replaces the file; the name decides the served type
    await upload(client, alice, run_id, "notes/hello.txt", b"bye")
    again = await client.get(
        GET_ARTIFACT, params={"run_uuid": run_id, "path": "notes/hello.txt"}, headers=alice.headers
    )
    assert again.content == b"bye"
    weights = bytes(range(256)) * 1000
    chunked = await upload(client, alice, run_id, "model/weights.bin", chunks_of(weights, 4096))
    assert chunked.status_code == 200, chunked.text
    got = await client.get(
        GET_ARTIFACT,
        params={"run_uuid": run_id, "path": "model%2Fweights.bin"},  # decoded as MLflow does
        headers=alice.headers,
    )
    assert got.content == weights
    assert got.headers["content-type"] == "application/octet-stream"
    assert got.headers["etag"] == f'"{hashlib.sha256(weights).hexdigest()}"'
    created_paths = [e["data"]["path"] for e in await outbox(db) if e["type"] == "artifact.created"]
    assert created_paths == ["notes/hello.txt", "notes/hello.txt", "model/weights.bin"]


async def chunks_of(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def test_upload_artifact_refuses_what_mlflow_refuses_in_its_words(
    mlflow, client, alice
) -> None:
    run_id = (await mlflow.new_run(alice))["info"]["run_id"]
    cases: list[tuple[dict[str, str], bytes, str]] = [
        ({}, b"x", "Request must specify run_uuid."),
        ({"run_uuid": run_id}, b"x", "Request must specify path."),
        ({"run_uuid": run_id, "path": ""}, b"x", "Request must specify path."),
        ({"run_uuid": run_id, "path": "../test.txt"}, b"x", "Invalid path"),
        ({"run_uuid": run_id, "path": "a/%2E%2E/%2E%2E/b"}, b"x", "Invalid path"),
        ({"run_uuid": run_id, "path": "/etc/passwd"}, b"x", "Invalid path"),
        ({"run_uuid": run_id, "path": "a#b"}, b"x", "Invalid path"),
        ({"run_uuid": run_id, "path": "test.txt"}, b"", "Request must specify data."),
    ]
    for params, content, message in cases:
        response = await client.post(UPLOAD, params=params, content=content, headers=alice.headers)
        text = assert_refused(response, 400, "INVALID_PARAMETER_VALUE")
        assert text == message, params
    # MLflow's 10 MB cap: announced, or found while the body streams in (no Content-Length)
    too_big = await upload(client, alice, run_id, "big.bin", b"x" * (10 * MB + 1))
    assert_refused(too_big, 400, "INVALID_PARAMETER_VALUE", "Max size is 10MB.")
    streamed = await upload(client, alice, run_id, "big.bin", chunks_of(b"x" * (10 * MB + 1), MB))
    assert_refused(streamed, 400, "INVALID_PARAMETER_VALUE", "Max size is 10MB.")
    unknown = await upload(client, alice, uuid.uuid4().hex, "a.txt", b"x")
    assert_refused(unknown, 404, "RESOURCE_DOES_NOT_EXIST")
    malformed = await upload(client, alice, "not-a-run", "a.txt", b"x")
    assert_refused(malformed, 404, "RESOURCE_DOES_NOT_EXIST")
    listed = await mlflow.ok(alice, "artifacts/list", params={"run_id": run_id})
    assert "files" not in listed


async def test_an_upload_past_the_cap_is_refused_without_reading_the_rest_of_the_body(
    mlflow, client, alice
) -> None:
    run_id = (await mlflow.new_run(alice))["info"]["run_id"]
    sent: list[int] = []

    async def endless() -> AsyncIterator[bytes]:
        for _ in range(64):
            sent.append(MB)
            yield b"y" * MB

    response = await upload(client, alice, run_id, "huge.bin", endless())
    assert_refused(response, 400, "INVALID_PARAMETER_VALUE", "Max size is 10MB.")
    assert 10 < len(sent) < 64


async def test_service_limits_still_hold_for_the_uis_upload(settings: Settings, alice) -> None:
    small = settings.model_copy(update={"artifact_max_bytes": 10, "artifact_user_quota_bytes": 15})
    async with running_app(create_app(small)) as client:
        mlflow = Mlflow(client)
        run_id = (await mlflow.new_run(alice))["info"]["run_id"]
        over_limit = await upload(client, alice, run_id, "a.bin", b"x" * 11)
        assert_refused(over_limit, 413, "RESOURCE_LIMIT_EXCEEDED")
        assert (await upload(client, alice, run_id, "a.bin", b"x" * 10)).status_code == 200
        over_quota = await upload(client, alice, run_id, "b.bin", b"x" * 10)
        assert_refused(over_quota, 413, "RESOURCE_LIMIT_EXCEEDED")


async def test_get_artifact_refuses_bad_requests_in_mlflows_shape(mlflow, client, alice) -> None:
    run_id = (await mlflow.new_run(alice))["info"]["run_id"]
    await upload(client, alice, run_id, "dir/a.txt", b"a")
    missing_path = await client.get(GET_ARTIFACT, params={"run_id": run_id}, headers=alice.headers)
    assert_refused(missing_path, 400, "INVALID_PARAMETER_VALUE", "'path'")
    for path in ("../path", "a/..%2F..%2Fb", "%252E%252E/x"):
        escape = await client.get(
            GET_ARTIFACT, params={"run_id": run_id, "path": path}, headers=alice.headers
        )
        assert (escape.status_code, escape.json()) == (
            400,
            {"error_code": "INVALID_PARAMETER_VALUE", "message": "Invalid path"},
        )
    for path in ("dir", "dir/", ""):
        directory = await client.get(
            GET_ARTIFACT, params={"run_id": run_id, "path": path}, headers=alice.headers
        )
        assert_refused(directory, 400, "INVALID_PARAMETER_VALUE", "refers to a directory")
    absent = await client.get(
        GET_ARTIFACT, params={"run_id": run_id, "path": "dir/b.txt"}, headers=alice.headers
    )
    assert_refused(absent, 404, "RESOURCE_DOES_NOT_EXIST")
    no_run = await client.get(GET_ARTIFACT, params={"path": "dir/a.txt"}, headers=alice.headers)
    assert_refused(no_run, 400, "INVALID_PARAMETER_VALUE", "run_id")
    unknown = await client.get(
        GET_ARTIFACT, params={"run_id": uuid.uuid4().hex, "path": "a.txt"}, headers=alice.headers
    )
    assert_refused(unknown, 404, "RESOURCE_DOES_NOT_EXIST")


async def test_other_users_runs_do_not_exist_and_viewers_read_but_cannot_upload(
    mlflow, client, alice, bob, viewer
) -> None:
    run_id = (await mlflow.new_run(alice))["info"]["run_id"]
    assert (await upload(client, alice, run_id, "mine.txt", b"mine")).status_code == 200
    params = {"run_uuid": run_id, "path": "mine.txt"}
    stolen = await client.get(GET_ARTIFACT, params=params, headers=bob.headers)
    assert_refused(stolen, 404, "RESOURCE_DOES_NOT_EXIST")
    overwrite = await upload(client, bob, run_id, "mine.txt", b"bob")
    assert_refused(overwrite, 404, "RESOURCE_DOES_NOT_EXIST")
    seen = await client.get(GET_ARTIFACT, params=params, headers=viewer.headers)
    assert seen.content == b"mine"
    refused = await upload(client, viewer, run_id, "viewer.txt", b"v")
    assert_refused(refused, 403, "PERMISSION_DENIED")
    kept = await client.get(GET_ARTIFACT, params=params, headers=alice.headers)
    assert kept.content == b"mine"
