"""Circuit breaker per upstream, streaming both ways, CORS and security headers, X-Forwarded-For."""

from __future__ import annotations

import asyncio
import hashlib
import re

import pytest

PROBLEM_JSON = "application/problem+json"


@pytest.fixture
def auth_headers(signing_key) -> dict[str, str]:
    return {"Authorization": f"Bearer {signing_key.token()}"}


def circuit_state(metrics: str, upstream: str) -> float:
    match = re.search(
        rf'^runyard_gateway_circuit_state\{{upstream="{upstream}"\}} (\S+)$', metrics, re.M
    )
    assert match, metrics
    return float(match.group(1))


async def test_a_down_upstream_opens_its_circuit_then_recovers_when_it_is_back(
    start_gateway, upstream_factory, auth_headers
) -> None:
    async with upstream_factory("experiments") as upstream:
        url = upstream.url  # a port where the experiments service ran: it is down now
    async with start_gateway(
        experiments_url=url, circuit_failure_threshold=2, circuit_open_s=2.0
    ) as gateway:
        attempts = [
            await gateway.get("/api/v1/experiments", headers=auth_headers) for _ in range(4)
        ]
        assert [a.status_code for a in attempts] == [502, 502, 503, 503]
        fast = attempts[2]
        assert fast.headers["content-type"] == PROBLEM_JSON
        assert fast.json()["upstream"] == "experiments"
        assert int(fast.headers["retry-after"]) >= 1
        assert circuit_state((await gateway.get(gateway.metrics_url)).text, "experiments") == 1
        other = await gateway.get("/api/v1/notifications/inbox", headers=auth_headers)
        assert other.status_code == 200  # one circuit per upstream
        async with upstream_factory("experiments", url=url) as back:
            still_open = await gateway.get("/api/v1/experiments", headers=auth_headers)
            assert still_open.status_code == 503
            assert back.requests == []  # while open, nothing is sent: no pile-up
            await asyncio.sleep(2.1)  # the open period passes; the next request is the trial
            recovered = await gateway.get("/api/v1/experiments", headers=auth_headers)
            after = await gateway.get("/api/v1/experiments", headers=auth_headers)
            metrics = (await gateway.get(gateway.metrics_url)).text
    assert (recovered.status_code, after.status_code) == (200, 200)
    assert len(back.requests) == 2
    assert circuit_state(metrics, "experiments") == 0


async def test_large_responses_are_relayed_intact_with_and_without_content_length(
    client, auth_headers, body_pattern
) -> None:
    size = 3 * 1024 * 1024 + 17
    sized = await client.get(f"/api/v1/experiments/blob?bytes={size}", headers=auth_headers)
    chunked = await client.get(f"/api/v1/experiments/blob?chunked={size}", headers=auth_headers)
    for response in (sized, chunked):
        assert response.status_code == 200
        assert (
            hashlib.sha256(response.content).digest() == hashlib.sha256(body_pattern(size)).digest()
        )
    assert sized.headers["content-length"] == str(size)
    assert "content-length" not in chunked.headers
    assert chunked.headers.get("transfer-encoding") == "chunked"


async def test_large_request_bodies_are_streamed_to_the_upstream_and_capped(
    start_gateway, auth_headers, experiments_upstream, body_pattern
) -> None:
    body = body_pattern(300_000)

    async def chunks(total: int):
        for i in range(0, total, 50_000):
            yield body_pattern(total)[i : i + 50_000]

    async with start_gateway(stream_threshold_bytes=64 * 1024, max_body_bytes=400_000) as client:
        sized = await client.post("/api/v1/experiments", content=body, headers=auth_headers)
        unsized = await client.post(
            "/api/v1/experiments", content=chunks(300_000), headers=auth_headers
        )
        too_big = await client.post(
            "/api/v1/experiments", content=chunks(500_000), headers=auth_headers
        )
    assert (sized.status_code, unsized.status_code) == (200, 200)
    received = [r["body"].encode("latin-1") for r in experiments_upstream.requests]
    assert received[:2] == [body, body]
    assert too_big.status_code == 413
    assert too_big.headers["content-type"] == PROBLEM_JSON
    assert len(received) == 2  # the oversized one never completed upstream


async def test_security_headers_are_set_and_hsts_only_when_configured(start_gateway) -> None:
    async with start_gateway() as client:
        plain = await client.get("/api/v1/experiments")
    async with start_gateway(hsts_max_age_s=31536000) as client:
        hsts = await client.get("/health")
    assert plain.headers["x-content-type-options"] == "nosniff"
    assert plain.headers["x-frame-options"] == "DENY"
    assert plain.headers["content-security-policy"].startswith("default-src 'none'")
    assert "strict-transport-security" not in plain.headers
    assert hsts.headers["strict-transport-security"] == "max-age=31536000"


async def test_cors_preflight_is_answered_for_configured_origins_only(start_gateway) -> None:
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    async with start_gateway(cors_allow_origins="https://app.example.com") as client:
        allowed = await client.options(
            "/api/v1/experiments", headers={**preflight, "Origin": "https://app.example.com"}
        )
        other = await client.options(
            "/api/v1/experiments", headers={**preflight, "Origin": "https://evil.example.com"}
        )
        simple = await client.get(
            "/api/v1/experiments", headers={"Origin": "https://app.example.com"}
        )
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://app.example.com"
    assert "POST" in allowed.headers["access-control-allow-methods"]
    assert other.status_code == 400
    assert "access-control-allow-origin" not in other.headers
    assert simple.headers["access-control-allow-origin"] == "https://app.example.com"
    assert "x-request-id" in simple.headers["access-control-expose-headers"].lower()


async def test_without_cors_origins_no_cors_headers_are_sent(client) -> None:
    response = await client.get("/api/v1/experiments", headers={"Origin": "https://a.example"})
    assert "access-control-allow-origin" not in response.headers


async def test_forwarded_for_is_believed_only_from_trusted_proxies(
    start_gateway, auth_headers, experiments_upstream, db_conn, eventually
) -> None:
    spoofed = {**auth_headers, "X-Forwarded-For": "192.0.2.66, 203.0.113.9, 198.51.100.7"}
    async with start_gateway() as client:
        await client.get("/api/v1/experiments", headers=spoofed)
    async with start_gateway(trusted_proxies="127.0.0.0/8, 198.51.100.0/24") as client:
        await client.get("/api/v1/experiments", headers=spoofed)
    untrusted, trusted = (r["headers"] for r in experiments_upstream.requests)
    assert dict(untrusted)["x-forwarded-for"] == "127.0.0.1"
    # only the address the gateway resolved: the services take the first entry as the client
    assert dict(trusted)["x-forwarded-for"] == "203.0.113.9"
    ips = await eventually(
        lambda: db_conn.fetch("SELECT ip_address FROM gateway.api_request_logs ORDER BY id")
    )
    assert [r["ip_address"] for r in ips] == ["127.0.0.1", "203.0.113.9"]


def test_a_half_open_trial_that_ends_without_a_verdict_lets_the_next_request_try() -> None:
    from runyard.gateway.breaker import CircuitBreaker, State

    breaker = CircuitBreaker("bench", threshold=1, open_s=0.0)
    breaker.record_failure()
    assert breaker.state == State.OPEN
    breaker.before_call()  # open period over: this one is the trial
    assert breaker.state == State.HALF_OPEN
    with pytest.raises(Exception, match="unavailable"):
        breaker.before_call()  # only one trial at a time
    breaker.release()  # the trial's client went away
    breaker.before_call()  # the next request becomes the trial
    breaker.record_success()
    assert breaker.state == State.CLOSED
