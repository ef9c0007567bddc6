"""One address guessing API keys is refused with 429 before the gateway asks auth. The auth fake
records every internal call it receives (``auth_upstream.internal_calls``): that is the count of
lookups."""

from __future__ import annotations

import secrets
import string
import uuid
from typing import Any

PROBLEM_JSON = "application/problem+json"
ALPHABET = string.ascii_letters + string.digits


def random_key() -> str:
    return "ry_" + "".join(secrets.choice(ALPHABET) for _ in range(36))


def grant(user_id: uuid.UUID, *scopes: str) -> dict[str, Any]:
    return {
        "key_id": str(uuid.uuid4()),
        "user_id": str(user_id),
        "username": "ada",
        "role": "user",
        "scopes": list(scopes),
        "rate_limit": None,
        "expires_at": None,
    }


def from_ip(ip: str, **headers: str) -> dict[str, str]:
    return {"X-Forwarded-For": ip, **headers}


async def test_random_api_keys_from_one_ip_get_429_before_auth_is_asked(
    start_gateway, auth_upstream, experiments_upstream
) -> None:
    async with start_gateway(rate_limit_failed_api_keys_per_ip_per_minute=5) as gateway:
        answers = [
            await gateway.get("/api/v1/experiments", headers={"X-API-Key": random_key()})
            for _ in range(15)
        ]
    assert [a.status_code for a in answers] == [401] * 5 + [429] * 10
    assert len(auth_upstream.internal_calls) == 5  # the ten refused keys were never looked up
    refused = answers[-1]
    assert refused.headers["content-type"] == PROBLEM_JSON
    assert int(refused.headers["retry-after"]) >= 1
    assert experiments_upstream.requests == []


async def test_once_refused_even_a_valid_key_from_that_ip_is_not_looked_up(
    start_gateway, auth_upstream, experiments_upstream
) -> None:
    valid = random_key()
    auth_upstream.api_keys[valid] = grant(uuid.uuid4(), "experiments:read")
    async with start_gateway(rate_limit_failed_api_keys_per_ip_per_minute=3) as gateway:
        for _ in range(3):
            await gateway.get("/api/v1/experiments", headers={"X-API-Key": random_key()})
        asked = len(auth_upstream.internal_calls)
        answer = await gateway.get("/api/v1/experiments", headers={"X-API-Key": valid})
    assert answer.status_code == 429
    assert len(auth_upstream.internal_calls) == asked == 3
    assert experiments_upstream.requests == []


async def test_working_keys_spend_none_of_the_allowance(
    start_gateway, auth_upstream, experiments_upstream
) -> None:
    valid = random_key()
    auth_upstream.api_keys[valid] = grant(uuid.uuid4(), "experiments:read")
    async with start_gateway(rate_limit_failed_api_keys_per_ip_per_minute=2) as gateway:
        good = [
            await gateway.get("/api/v1/experiments", headers={"X-API-Key": valid})
            for _ in range(10)
        ]
        bad = [
            await gateway.get("/api/v1/experiments", headers={"X-API-Key": random_key()})
            for _ in range(3)
        ]
    assert {a.status_code for a in good} == {200}
    assert [a.status_code for a in bad] == [401, 401, 429]


async def test_the_limit_is_per_client_ip_and_spares_bearer_tokens(
    start_gateway, auth_upstream, signing_key
) -> None:
    guesser, neighbour = "203.0.113.5", "198.51.100.7"
    async with start_gateway(
        trusted_proxies="127.0.0.1", rate_limit_failed_api_keys_per_ip_per_minute=2
    ) as gateway:
        guesses = [
            await gateway.get(
                "/api/v1/experiments", headers=from_ip(guesser, **{"X-API-Key": random_key()})
            )
            for _ in range(4)
        ]
        other = await gateway.get(
            "/api/v1/experiments", headers=from_ip(neighbour, **{"X-API-Key": random_key()})
        )
        with_token = await gateway.get(
            "/api/v1/experiments",
            headers=from_ip(guesser, Authorization=f"Bearer {signing_key.token()}"),
        )
    assert [g.status_code for g in guesses] == [401, 401, 429, 429]
    assert other.status_code == 401  # asked: its own allowance
    assert with_token.status_code == 200


async def test_admin_routes_are_guarded_the_same_way(start_gateway, auth_upstream) -> None:
    async with start_gateway(rate_limit_failed_api_keys_per_ip_per_minute=2) as gateway:
        answers = [
            await gateway.get("/api/v1/admin/request-logs", headers={"X-API-Key": random_key()})
            for _ in range(4)
        ]
    assert [a.status_code for a in answers] == [401, 401, 429, 429]
    assert len(auth_upstream.internal_calls) == 2
