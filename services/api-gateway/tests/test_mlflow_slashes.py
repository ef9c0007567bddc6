"""Paths with repeated slashes that merge into an MLflow path (``//model-versions/get-artifact``,
as MLflow's own ``test_path_validation`` sends it): the gateway answers them as MLflow's server
does, with a 308 to the merged path on the same host and the query kept, before any
authentication. Every other path with repeated slashes is answered as before, dot segments are
still refused, and no path ever redirects to another host."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import httpx
import pytest

from runyard.gateway.mlflow import MLFLOW_PATHS, merged_mlflow_path

KEY = "ry_" + "s" * 36


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def send(client: httpx.AsyncClient, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """``path`` as written (a relative ``//host/...`` would name another host to httpx)."""
    return await client.request(method, str(client.base_url).rstrip("/") + path, **kwargs)


def assert_redirected(response: httpx.Response, location: str) -> None:
    assert response.status_code == 308, response.text
    assert response.headers["location"] == location
    assert response.content == b""


def assert_console(response: httpx.Response) -> None:
    """What the gateway answers for the console's paths (the console is unreachable here)."""
    assert response.headers["content-type"] == "application/problem+json", response.text
    assert "console" in response.json()["detail"]


async def test_mlflows_double_slash_model_version_download_is_redirected_to_the_single_slash_path(
    client, auth_upstream, experiments_upstream
) -> None:
    query = "name=model&version=1&path=..%2Fpath"
    response = await send(client, "GET", f"//model-versions/get-artifact?{query}")
    assert_redirected(response, f"/model-versions/get-artifact?{query}")
    assert experiments_upstream.requests == []
    assert auth_upstream.requests == auth_upstream.internal_calls == []


@pytest.mark.parametrize(
    ("path", "location"),
    [
        ("//get-artifact?run_id=r&path=a", "/get-artifact?run_id=r&path=a"),
        ("///model-versions//get-artifact", "/model-versions/get-artifact"),
        ("/api//2.0/mlflow/runs/get?run_id=r", "/api/2.0/mlflow/runs/get?run_id=r"),
        ("/api/2.0/mlflow//runs//get?run_id=r", "/api/2.0/mlflow/runs/get?run_id=r"),
        ("//ajax-api/2.0/mlflow/experiments/get", "/ajax-api/2.0/mlflow/experiments/get"),
        ("/ajax-api/2.0//mlflow-artifacts/artifacts", "/ajax-api/2.0/mlflow-artifacts/artifacts"),
        # a client's %2F is a slash (MLflow merges it too); the query is kept as sent
        (
            "/api/2.0/mlflow/%2Fruns/get?run_id=r&x=%2F%2Fy&e=%C3%A9",
            "/api/2.0/mlflow/runs/get?run_id=r&x=%2F%2Fy&e=%C3%A9",
        ),
        (
            "/api/2.0/mlflow//experiments/get-by-name?experiment_name=a%20b",
            "/api/2.0/mlflow/experiments/get-by-name?experiment_name=a%20b",
        ),
        # repeats before a file's path merge all of it, as MLflow merges them ...
        (
            "/api/2.0//mlflow-artifacts/artifacts/0/a//b.txt",
            "/api/2.0/mlflow-artifacts/artifacts/0/a/b.txt",
        ),
        # ... but leading slashes alone leave the file's path as it is (MLflow serves it so)
        (
            "//api/2.0/mlflow-artifacts/artifacts/0/a//b%20c.txt",
            "/api/2.0/mlflow-artifacts/artifacts/0/a//b%20c.txt",
        ),
    ],
)
async def test_repeated_slashes_are_merged_as_mlflow_merges_them(
    client, experiments_upstream, path: str, location: str
) -> None:
    response = await send(client, "GET", path)
    assert_redirected(response, location)
    assert experiments_upstream.requests == []


async def test_every_method_of_mlflows_paths_is_redirected_and_others_are_405_in_mlflows_shape(
    client, experiments_upstream
) -> None:
    for method in ("GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"):
        body = None if method in ("GET", "HEAD", "OPTIONS") else b"{}"
        response = await send(client, method, "/api/2.0/mlflow//runs/update", content=body)
        assert response.status_code == 308, method
        assert response.headers["location"] == "/api/2.0/mlflow/runs/update"
    refused = await send(client, "TRACE", "//get-artifact?run_id=r&path=a")
    assert refused.status_code == 405
    assert refused.headers["content-type"] == "application/json"
    assert refused.json()["error_code"] == "ENDPOINT_NOT_FOUND"
    assert experiments_upstream.requests == []


async def test_the_redirect_comes_before_authentication_whatever_the_credentials(
    client, auth_upstream, experiments_upstream
) -> None:
    basic = base64.b64encode(b"ada:wrong").decode()
    for headers in (
        {},
        bearer("not-a-token"),
        bearer(KEY),
        {"X-API-Key": KEY},
        {"Authorization": f"Basic {basic}"},
    ):
        response = await send(
            client, "POST", "//api/2.0/mlflow/runs/search", json={}, headers=headers
        )
        assert_redirected(response, "/api/2.0/mlflow/runs/search")
    assert auth_upstream.requests == auth_upstream.internal_calls == []
    assert experiments_upstream.requests == []


async def test_a_client_following_the_redirect_reaches_experiments_with_method_body_and_query(
    client, signing_key, experiments_upstream
) -> None:
    user_id = uuid.uuid4()
    headers = bearer(signing_key.token(sub=str(user_id)))
    searched = await send(
        client,
        "POST",
        "/api/2.0/mlflow//runs/search",
        json={"experiment_ids": ["0"]},
        headers=headers,
        follow_redirects=True,
    )
    assert searched.status_code == 200, searched.text
    assert [r.status_code for r in searched.history] == [308]
    downloaded = await send(
        client,
        "GET",
        "//model-versions/get-artifact?name=m&version=1&path=MLmodel",
        headers=headers,
        follow_redirects=True,
    )
    assert downloaded.status_code == 200, downloaded.text
    seen = [
        (r["method"], r["raw_path"], r["query"], r["body"]) for r in experiments_upstream.requests
    ]
    assert seen == [
        ("POST", "/api/2.0/mlflow/runs/search", "", '{"experiment_ids":["0"]}'),
        ("GET", "/model-versions/get-artifact", "name=m&version=1&path=MLmodel", ""),
    ]


async def test_a_files_own_repeated_slashes_are_forwarded_unchanged(
    client, signing_key, experiments_upstream
) -> None:
    for prefix in (
        "/api/2.0/mlflow-artifacts/artifacts/",
        "/ajax-api/2.0/mlflow-artifacts/artifacts/",
    ):
        path = f"{prefix}0/run/artifacts/a//b.txt"
        response = await send(client, "GET", path, headers=bearer(signing_key.token()))
        assert response.status_code == 200, response.text
        assert experiments_upstream.requests[-1]["raw_path"] == path


@pytest.mark.parametrize(
    "path",
    [
        "//evil.com/api/2.0/mlflow/runs/get",
        "//evil.com//model-versions/get-artifact?name=m&version=1&path=a",
        "///evil.com//get-artifact",
        "/%2F%2Fevil.com/get-artifact",
        "//evil.com/%2F/api/2.0/mlflow/runs/get",
        "/%5Cevil.com//get-artifact",
        "//%5Cevil.com//get-artifact",
        "//evil.com",
    ],
)
async def test_a_host_in_the_path_is_never_a_redirect_target(
    client, experiments_upstream, path: str
) -> None:
    response = await send(client, "GET", path)
    assert response.status_code != 308
    assert "location" not in response.headers
    assert_console(response)
    assert experiments_upstream.requests == []


@pytest.mark.parametrize(
    "path",
    [
        "////api//2.0/mlflow/runs/get",
        "/%2F/api/2.0/mlflow/runs/get",
        "//%2F//get-artifact",
        "/%2F%2F%2Fmodel-versions/get-artifact",
        "//api/2.0/mlflow/%2F%2Fevil.com/x",
        "//api/2.0/mlflow-artifacts/artifacts//evil.com/x",
    ],
)
async def test_every_redirect_target_is_a_path_on_this_host(client, path: str) -> None:
    response = await send(client, "GET", path)
    assert response.status_code == 308
    location = response.headers["location"]
    assert location.startswith("/")
    assert location[1] not in "/\\"
    assert httpx.URL("http://gateway.test/").join(location).host == "gateway.test"


def test_a_merged_path_always_starts_with_one_slash_and_an_mlflow_path() -> None:
    leads = ["", "/", "//", "///", "/\\", "//evil.com", "//evil.com/", "/evil.com//"]
    rests = [
        "api/2.0/mlflow/runs/get",
        "/api/2.0/mlflow//runs/get",
        "get-artifact",
        "model-versions//get-artifact",
        "ajax-api/2.0/mlflow-artifacts/artifacts//evil.com",
        "\\evil.com/get-artifact",
    ]
    for lead in leads:
        for rest in rests:
            merged = merged_mlflow_path(f"{lead}/{rest}")
            if merged is not None:
                assert merged.startswith(("/api/2.0/", "/ajax-api/2.0/", *MLFLOW_PATHS))
                assert merged[1] not in "/\\"


async def test_other_paths_with_repeated_slashes_are_answered_as_before(
    client, signing_key, experiments_upstream
) -> None:
    headers = bearer(signing_key.token())
    for path in ("//", "//docs", "/console//runs", "/get-artifact//", "//model-versions/get"):
        assert_console(await send(client, "GET", path, headers=headers))
    outside = await send(client, "GET", "/api/2.0//preview/mlflow/runs/get", headers=headers)
    assert outside.status_code == 404
    assert outside.json()["error_code"] == "ENDPOINT_NOT_FOUND"
    runyard = await send(client, "GET", "/api/v1//experiments", headers=headers)
    assert runyard.status_code == 404
    assert runyard.headers["content-type"] == "application/problem+json"
    assert experiments_upstream.requests == []


async def test_dot_segments_are_still_refused_not_redirected(
    client, signing_key, experiments_upstream
) -> None:
    headers = bearer(signing_key.token())
    for path in (
        "/api/2.0/mlflow//%2E%2E/mlflow/runs/get",
        "/api/2.0/mlflow-artifacts//artifacts/%2e%2e/secret",
        "/ajax-api/2.0/mlflow/%2E//runs/get",
    ):
        response = await send(client, "GET", path, headers=headers)
        assert response.status_code == 400, path
        assert response.json()["error_code"] == "BAD_REQUEST"
    for path in ("//api/2.0/mlflow/%2E%2E/mlflow/runs/get", "//model-versions/%2e/get-artifact"):
        response = await send(client, "GET", path, headers=headers)
        assert response.status_code != 308, path
        assert_console(response)
    assert experiments_upstream.requests == []
