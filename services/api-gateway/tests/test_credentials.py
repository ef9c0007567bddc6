"""API keys and live sessions, checked with the auth service's internal endpoints."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import SecretStr

from runyard.shared.identity import verify_identity
from runyard.shared.settings import dev_secret

PROBLEM_JSON = "application/problem+json"
KEY = "ry_" + "k" * 40


def grant(user_id: uuid.UUID, *scopes: str, role: str = "user", **extra: Any) -> dict[str, Any]:
    return {
        "key_id": str(uuid.uuid4()),
        "user_id": str(user_id),
        "username": "ada",
        "role": role,
        "scopes": list(scopes),
        "rate_limit": None,
        "expires_at": None,
        **extra,
    }


def forwarded_identity(upstream: Any) -> Any:
    seen = {k: v[0] for k, v in upstream.received_headers().items()}
    return verify_identity(dev_secret("identity-signing").get_secret_value(), seen)


async def test_api_key_with_read_scope_reads_and_is_forwarded_as_the_keys_owner(
    client, auth_upstream, experiments_upstream
) -> None:
    owner = uuid.uuid4()
    auth_upstream.api_keys[KEY] = grant(owner, "experiments:read")
    response = await client.get("/api/v1/experiments", headers={"X-API-Key": KEY})
    assert response.status_code == 200, response.text
    principal = forwarded_identity(experiments_upstream)
    assert principal.user_id == owner
    assert principal.auth_method == "api_key"
    assert principal.api_key_id == auth_upstream.api_keys[KEY]["key_id"]
    assert "x-api-key" not in experiments_upstream.received_headers()


async def test_api_key_without_write_scope_cannot_post_and_nothing_is_forwarded(
    client, auth_upstream, experiments_upstream
) -> None:
    auth_upstream.api_keys[KEY] = grant(uuid.uuid4(), "experiments:read")
    response = await client.post("/api/v1/experiments", json={}, headers={"X-API-Key": KEY})
    assert response.status_code == 403
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json()["required_scope"] == "experiments:write"
    assert experiments_upstream.requests == []


async def test_admin_scope_covers_every_area(client, auth_upstream, experiments_upstream) -> None:
    auth_upstream.api_keys[KEY] = grant(uuid.uuid4(), "admin")
    response = await client.post("/api/v1/experiments", json={}, headers={"X-API-Key": KEY})
    assert response.status_code == 200


async def test_unknown_and_expired_keys_get_the_same_401(client, auth_upstream) -> None:
    expired = "ry_" + "e" * 40
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    auth_upstream.api_keys[expired] = grant(uuid.uuid4(), "admin", expires_at=past)
    unknown = await client.get("/api/v1/experiments", headers={"X-API-Key": "ry_nope"})
    stale = await client.get("/api/v1/experiments", headers={"X-API-Key": expired})
    assert unknown.status_code == stale.status_code == 401
    assert unknown.json()["detail"] == stale.json()["detail"] == "Invalid API key."


async def test_revoked_key_is_refused_once_the_cache_expires(start_gateway, auth_upstream) -> None:
    auth_upstream.api_keys[KEY] = grant(uuid.uuid4(), "experiments:read")
    async with start_gateway(api_key_cache_s=0.0) as client:
        assert (
            await client.get("/api/v1/experiments", headers={"X-API-Key": KEY})
        ).status_code == 200
        del auth_upstream.api_keys[KEY]  # auth revoked it
        refused = await client.get("/api/v1/experiments", headers={"X-API-Key": KEY})
    assert refused.status_code == 401


async def test_answers_are_cached_so_auth_is_asked_once_per_key(client, auth_upstream) -> None:
    auth_upstream.api_keys[KEY] = grant(uuid.uuid4(), "experiments:read")
    for _ in range(3):
        await client.get("/api/v1/experiments", headers={"X-API-Key": KEY})
    verify_calls = [c for c in auth_upstream.internal_calls if "x-runyard-internal-signature" in c]
    assert len(verify_calls) == 1


async def test_token_of_a_revoked_session_or_deactivated_user_is_refused(
    start_gateway, auth_upstream, signing_key
) -> None:
    revoked, deactivated, live = (str(uuid.uuid4()) for _ in range(3))
    auth_upstream.sessions[revoked] = {"active": False}
    auth_upstream.sessions[deactivated] = {"user_active": False}
    async with start_gateway(session_cache_s=0.0) as client:
        answers = {
            sid: await client.get(
                "/api/v1/experiments",
                headers={"Authorization": f"Bearer {signing_key.token(sid=sid)}"},
            )
            for sid in (revoked, deactivated, live)
        }
    assert answers[revoked].status_code == answers[deactivated].status_code == 401
    assert answers[revoked].json()["detail"] == "The session has ended; log in again."
    assert answers[live].status_code == 200


async def test_token_without_session_id_is_refused(client, signing_key) -> None:
    token = signing_key.token(sid=None)
    response = await client.get("/api/v1/experiments", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401


async def test_role_changed_since_login_takes_effect_without_a_new_token(
    client, auth_upstream, signing_key, experiments_upstream
) -> None:
    sid = str(uuid.uuid4())
    auth_upstream.sessions[sid] = {"role": "viewer"}
    token = signing_key.token(sid=sid, role="admin")
    response = await client.get("/api/v1/experiments", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert forwarded_identity(experiments_upstream).role == "viewer"


async def test_gateway_fails_closed_when_auth_refuses_its_internal_calls(
    start_gateway, auth_upstream, signing_key
) -> None:
    async with start_gateway(identity_secret=SecretStr("not-the-shared-secret")) as client:
        response = await client.get(
            "/api/v1/experiments", headers={"Authorization": f"Bearer {signing_key.token()}"}
        )
    assert response.status_code == 503
    assert response.headers["content-type"] == PROBLEM_JSON


async def test_a_burst_of_one_callers_requests_asks_auth_once(
    client, auth_upstream, signing_key
) -> None:
    auth_upstream.api_keys[KEY] = grant(uuid.uuid4(), "experiments:read")
    by_token = {"Authorization": f"Bearer {signing_key.token()}"}
    by_key = {"X-API-Key": KEY}
    answers = await asyncio.gather(
        *(client.get("/api/v1/experiments", headers=h) for h in [by_token, by_key] * 20)
    )
    assert [a.status_code for a in answers] == [200] * 40
    # one session check and one key check, not one per request
    assert len(auth_upstream.internal_calls) == 2
