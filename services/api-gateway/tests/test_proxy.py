from __future__ import annotations

import uuid

import pytest

PROBLEM_JSON = "application/problem+json"


@pytest.fixture
def auth_headers(signing_key) -> dict[str, str]:
    return {"Authorization": f"Bearer {signing_key.token()}"}


async def test_method_path_query_and_body_are_forwarded_unchanged(
    client, auth_headers, experiments_upstream
) -> None:
    response = await client.patch(
        "/api/v1/experiments/a%20b/runs?x=1&x=2&q=%2F%C3%A9&flag",
        content=b'{"epoch": 3}',
        headers={**auth_headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    [seen] = experiments_upstream.requests
    assert seen["method"] == "PATCH"
    assert seen["raw_path"] == "/api/v1/experiments/a%20b/runs"
    assert seen["query"] == "x=1&x=2&q=%2F%C3%A9&flag"
    assert seen["body"] == '{"epoch": 3}'
    assert experiments_upstream.received_headers()["content-type"] == ["application/json"]


@pytest.mark.parametrize(
    ("path", "service"),
    [
        ("/api/v1/auth/me", "auth"),
        ("/api/v1/experiments/1", "experiments"),
        ("/api/v1/datasets", "experiments"),
        ("/api/v1/tags", "experiments"),
        ("/api/v1/saved-searches/1/run", "experiments"),
        ("/api/v1/hpo-campaigns", "experiments"),
        ("/api/v1/nas-campaigns/1/trials", "experiments"),
        ("/api/v1/dataset-generations", "experiments"),
        ("/api/v1/dataset-imports", "experiments"),
        ("/api/v1/models/1/aliases/champion", "experiments"),
        ("/api/v1/notifications/inbox", "notifications"),
    ],
)
async def test_each_area_goes_to_the_service_that_owns_it(
    client, auth_headers, path, service
) -> None:
    response = await client.get(path, headers=auth_headers)
    assert response.status_code == 200, response.text
    assert response.json()["service"] == service
    assert response.json()["raw_path"] == path


async def test_upstream_status_headers_and_body_are_relayed(
    client, auth_headers, experiments_upstream
) -> None:
    response = await client.post("/api/v1/experiments?status=409", headers=auth_headers)
    assert response.status_code == 409
    assert response.headers["x-upstream"] == "experiments"
    assert response.headers.get_list("set-cookie") == ["a=1", "b=2"]
    assert int(response.headers["content-length"]) == len(response.content)
    assert response.json()["method"] == "POST"
    assert response.headers.get_list("x-request-id") == [
        experiments_upstream.received_headers()["x-request-id"][0]
    ]


async def test_head_is_relayed_without_a_body(client, auth_headers, experiments_upstream) -> None:
    response = await client.head("/api/v1/experiments", headers=auth_headers)
    assert response.status_code == 200
    assert response.content == b""
    assert [r["method"] for r in experiments_upstream.requests] == ["HEAD"]


@pytest.mark.parametrize("authenticated", [True, False])
async def test_unknown_area_is_404_problem(client, auth_headers, authenticated) -> None:
    response = await client.get("/api/v1/nowhere/1", headers=auth_headers if authenticated else {})
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json()["instance"] == "/api/v1/nowhere/1"
    assert "x-request-id" in response.headers


async def test_path_under_api_outside_v1_is_404_problem(client) -> None:
    # other paths outside /api/ belong to the web console (test_console_routing.py)
    response = await client.get("/api/nowhere")
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM_JSON


async def test_dot_segments_are_rejected_before_routing(
    client, auth_headers, experiments_upstream
) -> None:
    response = await client.get("/api/v1/experiments/%2e%2e/webhooks", headers=auth_headers)
    assert response.status_code == 400
    assert response.headers["content-type"] == PROBLEM_JSON
    assert experiments_upstream.requests == []


async def test_upstream_down_is_502_problem(client, auth_headers) -> None:
    response = await client.get("/api/v1/webhooks", headers=auth_headers)
    assert response.status_code == 502
    assert response.headers["content-type"] == PROBLEM_JSON
    assert "webhooks" in response.json()["detail"]
    assert "x-request-id" in response.headers


async def test_slow_upstream_is_504_problem(start_gateway, auth_headers) -> None:
    async with start_gateway(upstream_timeout_s=0.3) as client:
        response = await client.get("/api/v1/experiments?sleep=2", headers=auth_headers)
    assert response.status_code == 504
    assert response.headers["content-type"] == PROBLEM_JSON


async def test_oversized_body_is_413_problem_and_never_forwarded(
    start_gateway, auth_headers, experiments_upstream
) -> None:
    async def chunks():
        for _ in range(3):
            yield b"x" * 512

    async with start_gateway(max_body_bytes=1024) as client:
        declared = await client.post(
            "/api/v1/experiments", content=b"x" * 1025, headers=auth_headers
        )
        streamed = await client.post("/api/v1/experiments", content=chunks(), headers=auth_headers)
        fits = await client.post("/api/v1/experiments", content=b"x" * 1024, headers=auth_headers)
    assert declared.status_code == 413
    assert declared.headers["content-type"] == PROBLEM_JSON
    assert streamed.status_code == 413
    assert fits.status_code == 200
    assert [len(r["body"]) for r in experiments_upstream.requests] == [1024]


async def test_an_artifact_upload_streams_past_the_body_limit_up_to_the_upload_limit(
    start_gateway, auth_headers, experiments_upstream
) -> None:
    async def chunks(count: int):
        for _ in range(count):
            yield b"a" * 4096

    upload = "/api/v1/experiments/8d1c1d2e-0000-4000-8000-000000000001/artifacts/model/weights.bin"
    async with start_gateway(max_body_bytes=1024, max_upload_bytes=64 * 1024) as client:
        uploaded = await client.put(upload, content=chunks(10), headers=auth_headers)
        too_big = await client.put(upload, content=chunks(17), headers=auth_headers)
        elsewhere = await client.put(
            "/api/v1/experiments/8d1c1d2e-0000-4000-8000-000000000001",
            content=b"x" * 4096,
            headers=auth_headers,
        )
    assert uploaded.status_code == 200
    assert too_big.status_code == 413
    assert too_big.headers["content-type"] == PROBLEM_JSON
    assert elsewhere.status_code == 413  # any other body keeps the general limit
    assert [len(r["body"]) for r in experiments_upstream.requests] == [40960]


async def test_a_per_area_timeout_overrides_the_default_for_that_area_only(
    start_gateway, auth_headers
) -> None:
    async with start_gateway(upstream_timeout_s=30, upstream_timeouts="experiments=0.3") as client:
        short = await client.get("/api/v1/experiments?sleep=2", headers=auth_headers)
        default = await client.get("/api/v1/datasets?sleep=0.5", headers=auth_headers)
    assert short.status_code == 504
    assert default.status_code == 200


async def test_a_body_sent_in_pieces_is_forwarded_whole(
    client, auth_headers, experiments_upstream
) -> None:
    async def pieces():
        for piece in (b'{"epoch": ', b"7, ", b'"loss": 0.5}'):
            yield piece

    response = await client.post(
        "/api/v1/experiments/1/runs",
        content=pieces(),
        headers={**auth_headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 200
    [seen] = experiments_upstream.requests
    assert seen["body"] == '{"epoch": 7, "loss": 0.5}'


async def test_a_method_the_proxy_does_not_take_is_405_problem(
    client, auth_headers, experiments_upstream
) -> None:
    response = await client.request("TRACE", "/api/v1/experiments", headers=auth_headers)
    assert response.status_code == 405
    assert response.headers["content-type"] == PROBLEM_JSON
    assert experiments_upstream.requests == []


async def test_proxied_requests_are_counted_under_the_proxy_route(client, auth_headers) -> None:
    assert (await client.get("/api/v1/experiments/1", headers=auth_headers)).status_code == 200
    assert (await client.get("/api/v1/nowhere", headers=auth_headers)).status_code == 404
    metrics = (await client.get(client.metrics_url)).text
    for status in ("200", "404"):
        assert (
            'runyard_http_request_duration_seconds_count{method="GET",'
            f'route="/api/v1/{{path:path}}",service="gateway",status="{status}"}}'
        ) in metrics


def test_signed_headers_are_those_of_the_current_second_for_each_caller() -> None:
    from runyard.gateway.proxy import SignedHeaders
    from runyard.shared.identity import (
        Principal,
        signed_client_headers,
        signed_identity_headers,
        verify_identity,
    )

    signed = SignedHeaders()
    ada = Principal(user_id=uuid.uuid4(), role="user", session_id="s1")
    bob = Principal(user_id=uuid.uuid4(), role="viewer", session_id="s2")
    for principal in (ada, bob, ada):
        headers = signed.identity("secret", principal)
        second = int(dict(headers)["X-Runyard-Signature"].split(",")[0].removeprefix("t="))
        assert headers == signed_identity_headers("secret", principal, now=second)
        seen = {k.lower(): v for k, v in headers}
        assert verify_identity("secret", seen) == principal
    assert signed.identity("other-secret", ada) != signed.identity("secret", ada)
    client = signed.client("secret", "203.0.113.7")
    second = int(dict(client)["X-Runyard-Client-Signature"].split(",")[0].removeprefix("t="))
    assert client == signed_client_headers("secret", "203.0.113.7", now=second)
