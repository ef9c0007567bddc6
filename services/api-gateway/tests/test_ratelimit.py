"""Token buckets per user, per API key (its own rate_limit) and per IP on login/register."""

from __future__ import annotations

import uuid

from runyard.gateway.ratelimit import TokenBuckets

KEY = "ry_" + "r" * 40


def bearer(signing_key, **claims) -> dict[str, str]:
    return {"Authorization": f"Bearer {signing_key.token(**claims)}"}


def test_bucket_refills_at_its_limit_per_minute() -> None:
    buckets = TokenBuckets()
    taken = [buckets.take("k", 60, now=0.0) for _ in range(61)]
    assert [d.allowed for d in taken] == [True] * 60 + [False]
    assert taken[59].remaining == 0
    assert taken[60].retry_after_s == 1
    assert taken[60].reset_s == 60
    assert buckets.take("k", 60, now=0.5).allowed is False  # half a token back
    assert buckets.take("k", 60, now=1.0).allowed is True
    assert buckets.take("other", 60, now=1.0).remaining == 59  # buckets are per key


async def test_user_limit_answers_429_with_retry_after_and_ratelimit_headers(
    start_gateway, signing_key, experiments_upstream
) -> None:
    headers = bearer(signing_key, sub=str(uuid.uuid4()))
    async with start_gateway(rate_limit_user_per_minute=3) as client:
        answers = [await client.get("/api/v1/experiments", headers=headers) for _ in range(4)]
        someone_else = await client.get("/api/v1/experiments", headers=bearer(signing_key))
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert [a.headers["ratelimit-remaining"] for a in answers[:3]] == ["2", "1", "0"]
    assert {a.headers["ratelimit-limit"] for a in answers} == {"3"}
    refused = answers[3]
    assert refused.headers["content-type"] == "application/problem+json"
    assert int(refused.headers["retry-after"]) >= 1
    assert int(refused.headers["ratelimit-reset"]) >= 1
    assert refused.json()["status"] == 429
    assert len(experiments_upstream.requests) == 4  # the refused one never reached it
    assert someone_else.status_code == 200


async def test_api_key_gets_its_own_rate_limit_and_keys_without_one_the_default(
    start_gateway, auth_upstream
) -> None:
    limited, default = KEY, "ry_" + "d" * 40
    for key, rate in ((limited, 2), (default, None)):
        auth_upstream.api_keys[key] = {
            "key_id": str(uuid.uuid4()),
            "user_id": str(uuid.uuid4()),
            "username": "ada",
            "role": "user",
            "scopes": ["experiments:read"],
            "rate_limit": rate,
            "expires_at": None,
        }
    async with start_gateway(rate_limit_api_key_per_minute=5) as client:
        own = [
            (await client.get("/api/v1/experiments", headers={"X-API-Key": limited})).status_code
            for _ in range(3)
        ]
        by_default = await client.get("/api/v1/experiments", headers={"X-API-Key": default})
    assert own == [200, 200, 429]
    assert by_default.headers["ratelimit-limit"] == "5"


async def test_login_and_register_are_limited_per_client_ip(start_gateway, auth_upstream) -> None:
    async with start_gateway(rate_limit_login_per_ip_per_minute=2) as client:
        answers = [
            await client.post("/api/v1/auth/register", json={"username": f"u{i}"}) for i in range(3)
        ]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert len(auth_upstream.requests) == 2


async def test_disabled_rate_limits_send_no_ratelimit_headers(start_gateway, signing_key) -> None:
    async with start_gateway(rate_limit_enabled=False, rate_limit_user_per_minute=1) as client:
        answers = [
            await client.get("/api/v1/experiments", headers=bearer(signing_key)) for _ in range(2)
        ]
    assert [a.status_code for a in answers] == [200, 200]
    assert "ratelimit-limit" not in answers[1].headers
