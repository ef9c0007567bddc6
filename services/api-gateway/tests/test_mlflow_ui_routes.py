"""The MLflow UI's own endpoints through the gateway: ``/get-artifact`` and
``/model-versions/get-artifact`` (at the root, outside MLflow's API prefixes),
``experiments/search-datasets`` and ``upload-artifact`` reach the experiments service unchanged
and are authenticated like every MLflow path (bearer token, API key with MLflow's read and write
scopes, Basic); the UI's upload is streamed with the upload limit like the artifact proxy's
PUTs."""

from __future__ import annotations

import importlib
import uuid
from typing import Any

from runyard.shared.identity import verify_identity
from runyard.shared.settings import dev_secret

# the real auth service and the helpers the MLflow route tests log in with
routes = importlib.import_module("services.api-gateway.tests.test_mlflow_routes")
real_auth = routes.real_auth
bearer = routes.bearer
assert_mlflow_error = routes.assert_mlflow_error
grant = routes.grant

GET_ARTIFACT = "/get-artifact"
MODEL_VERSION_ARTIFACT = "/model-versions/get-artifact"
SEARCH_DATASETS = "/ajax-api/2.0/mlflow/experiments/search-datasets"
UPLOAD = "/ajax-api/2.0/mlflow/upload-artifact"
KEY = "ry_" + "u" * 36


async def test_the_uis_endpoints_reach_experiments_with_path_query_and_body_unchanged(
    client, signing_key, experiments_upstream
) -> None:
    user_id = uuid.uuid4()
    token = signing_key.token(sub=str(user_id))
    got = await client.get(f"{GET_ARTIFACT}?path=dir%2Fa.txt&run_uuid=abc", headers=bearer(token))
    assert got.status_code == 200, got.text
    searched = await client.post(
        SEARCH_DATASETS, json={"experiment_ids": ["0"]}, headers=bearer(token)
    )
    assert searched.status_code == 200, searched.text
    uploaded = await client.post(
        f"{UPLOAD}?run_uuid=abc&path=a.txt", content=b"hello world", headers=bearer(token)
    )
    assert uploaded.status_code == 200, uploaded.text
    seen = [
        (r["method"], r["raw_path"], r["query"], r["body"]) for r in experiments_upstream.requests
    ]
    assert seen == [
        ("GET", GET_ARTIFACT, "path=dir%2Fa.txt&run_uuid=abc", ""),
        ("POST", SEARCH_DATASETS, "", '{"experiment_ids":["0"]}'),
        ("POST", UPLOAD, "run_uuid=abc&path=a.txt", "hello world"),
    ]
    for index in range(3):
        headers = {k: v[0] for k, v in experiments_upstream.received_headers(index).items()}
        assert "authorization" not in headers
        secret = dev_secret("identity-signing").get_secret_value()
        assert verify_identity(secret, headers).user_id == user_id


async def test_without_credentials_get_artifact_is_a_401_in_mlflows_shape_not_a_console_page(
    client, experiments_upstream
) -> None:
    for method, path in (
        ("GET", f"{GET_ARTIFACT}?path=a&run_uuid=r"),
        ("GET", f"{MODEL_VERSION_ARTIFACT}?name=m&version=1&path=MLmodel"),
        ("HEAD", f"{MODEL_VERSION_ARTIFACT}?name=m&version=1&path=MLmodel"),
        ("POST", UPLOAD),
    ):
        response = await client.request(method, path, content=b"x")
        assert response.status_code == 401, (path, response.text)
        if method != "HEAD":
            assert_mlflow_error(response, 401, "UNAUTHENTICATED")
    assert experiments_upstream.requests == []


async def test_api_key_scopes_make_get_artifact_and_dataset_search_reads_and_the_upload_a_write(
    client, auth_upstream, experiments_upstream
) -> None:
    auth_upstream.api_keys[KEY] = grant("experiments:read")
    reads = (
        ("GET", f"{GET_ARTIFACT}?path=a.txt&run_uuid=r"),
        ("HEAD", f"{GET_ARTIFACT}?path=a.txt&run_uuid=r"),
        ("GET", f"{MODEL_VERSION_ARTIFACT}?name=m&version=1&path=MLmodel"),
        ("HEAD", f"{MODEL_VERSION_ARTIFACT}?name=m&version=1&path=MLmodel"),
        ("POST", SEARCH_DATASETS),
        ("POST", "/api/2.0/mlflow/experiments/search-datasets"),
    )
    for method, path in reads:
        response = await client.request(method, path, json={}, headers=bearer(KEY))
        assert response.status_code == 200, (path, response.text)
    refused = await client.post(
        f"{UPLOAD}?run_uuid=r&path=a.txt", content=b"x", headers={"X-API-Key": KEY}
    )
    body = assert_mlflow_error(refused, 403, "PERMISSION_DENIED")
    assert "experiments:write" in body["message"]
    assert len(experiments_upstream.requests) == len(reads)

    writer = "ry_" + "v" * 36
    auth_upstream.api_keys[writer] = grant("experiments:read", "experiments:write")
    written = await client.post(
        f"{UPLOAD}?run_uuid=r&path=a.txt", content=b"x", headers=bearer(writer)
    )
    assert written.status_code == 200, written.text


async def test_the_uis_upload_gets_the_upload_limit_and_is_streamed_through(
    start_gateway, signing_key, experiments_upstream, body_pattern
) -> None:
    token = signing_key.token()
    limits = {"max_body_bytes": 10_000, "max_upload_bytes": 300_000}
    async with start_gateway(stream_threshold_bytes=16_384, **limits) as client:
        stored = await client.post(
            f"{UPLOAD}?run_uuid=r&path=weights.bin",
            content=body_pattern(200_000),
            headers=bearer(token),
        )
        assert stored.status_code == 200, stored.text
        assert experiments_upstream.requests[-1]["body"].encode("latin-1") == body_pattern(200_000)
        too_big = await client.post(
            f"{UPLOAD}?run_uuid=r&path=huge.bin",
            content=body_pattern(400_000),
            headers=bearer(token),
        )
        # another POST under the same prefix keeps the usual body limit
        not_an_upload = await client.post(
            SEARCH_DATASETS,
            content=body_pattern(20_000),
            headers={**bearer(token), "Content-Type": "application/json"},
        )
    assert_mlflow_error(too_big, 413, "RESOURCE_LIMIT_EXCEEDED")
    assert_mlflow_error(not_an_upload, 413, "RESOURCE_LIMIT_EXCEEDED")
    assert len(experiments_upstream.requests) == 1


async def test_basic_credentials_work_on_get_artifact_and_the_upload(
    start_gateway, real_auth, experiments_upstream
) -> None:
    async with start_gateway(auth_url=real_auth.url) as client:
        name, user_id = await routes.register(client)
        credentials = routes.basic(name, routes.PASSWORD)
        got = await client.get(f"{GET_ARTIFACT}?path=a.txt&run_uuid=r", headers=credentials)
        assert got.status_code == 200, got.text
        uploaded = await client.post(
            f"{UPLOAD}?run_uuid=r&path=a.txt", content=b"x", headers=credentials
        )
        assert uploaded.status_code == 200, uploaded.text
        version_file = await client.get(
            f"{MODEL_VERSION_ARTIFACT}?name=m&version=1&path=MLmodel", headers=credentials
        )
        assert version_file.status_code == 200, version_file.text
    principal = routes.identity_of(experiments_upstream)
    assert (str(principal.user_id), principal.auth_method) == (user_id, "password")
    assert len(experiments_upstream.requests) == 3


# --- /model-versions/get-artifact -------------------------------------------------------------


async def test_model_version_get_artifact_reaches_experiments_unchanged_as_the_caller(
    client, signing_key, experiments_upstream
) -> None:
    user_id = uuid.uuid4()
    token = signing_key.token(sub=str(user_id))
    query = "name=pump%20cnn&version=3&path=data%2Fconfig.json"
    got = await client.get(f"{MODEL_VERSION_ARTIFACT}?{query}", headers=bearer(token))
    assert got.status_code == 200, got.text
    head = await client.head(f"{MODEL_VERSION_ARTIFACT}?{query}", headers=bearer(token))
    assert head.status_code == 200
    seen = [(r["method"], r["raw_path"], r["query"]) for r in experiments_upstream.requests]
    assert seen == [("GET", MODEL_VERSION_ARTIFACT, query), ("HEAD", MODEL_VERSION_ARTIFACT, query)]
    headers = {k: v[0] for k, v in experiments_upstream.received_headers().items()}
    assert "authorization" not in headers
    secret = dev_secret("identity-signing").get_secret_value()
    assert verify_identity(secret, headers).user_id == user_id


async def test_model_version_get_artifact_needs_the_experiments_read_scope(
    client, auth_upstream, experiments_upstream
) -> None:
    auth_upstream.api_keys[KEY] = grant("notifications:read", "webhooks:read")
    refused = await client.get(
        f"{MODEL_VERSION_ARTIFACT}?name=m&version=1&path=MLmodel", headers=bearer(KEY)
    )
    body = assert_mlflow_error(refused, 403, "PERMISSION_DENIED")
    assert "experiments:read" in body["message"]
    assert experiments_upstream.requests == []


async def test_only_the_exact_model_version_path_is_mlflows(
    client, signing_key, experiments_upstream
) -> None:
    token = signing_key.token()
    for path in (
        "/model-versions/get-artifact/x",
        "/model-versions/get-artifacts",
        "/model-versions/get",
        "/model-versions/",
    ):
        response = await client.get(f"{path}?name=m&version=1&path=a", headers=bearer(token))
        # the console's (unreachable here), never MLflow's error shape nor the experiments'
        assert response.headers["content-type"] == "application/problem+json", path
        assert "console" in response.json()["detail"], path
    assert experiments_upstream.requests == []


async def test_the_root_paths_are_in_the_request_log_under_their_own_path(
    eventually, client, db_conn, signing_key
) -> None:
    user_id = uuid.uuid4()
    for path in (MODEL_VERSION_ARTIFACT, GET_ARTIFACT):
        response = await client.get(
            f"{path}?name=m&version=1&run_id=r&path=MLmodel",
            headers=bearer(signing_key.token(sub=str(user_id))),
        )
        assert response.status_code == 200

    async def both_logged() -> list[dict[str, Any]]:
        rows = [dict(r) for r in await db_conn.fetch("SELECT * FROM gateway.api_request_logs")]
        return rows if len(rows) == 2 else []

    rows = await eventually(both_logged)
    assert sorted((r["method"], r["endpoint"], r["service"], r["user_id"]) for r in rows) == [
        ("GET", GET_ARTIFACT, "experiments", user_id),
        ("GET", MODEL_VERSION_ARTIFACT, "experiments", user_id),
    ]
