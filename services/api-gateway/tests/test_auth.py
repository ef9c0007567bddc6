from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid

import pytest

from runyard.shared.identity import verify_identity
from runyard.shared.settings import dev_secret

PROBLEM_JSON = "application/problem+json"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_valid_token_is_forwarded_with_identity_headers_and_request_id(
    client, signing_key, experiments_upstream
) -> None:
    user_id = uuid.uuid4()
    token = signing_key.token(sub=str(user_id), role="admin", preferred_username="ada")
    response = await client.get(
        "/api/v1/experiments",
        headers={
            **bearer(token),
            "X-Runyard-User-Id": str(uuid.uuid4()),
            "X-Runyard-User-Role": "admin",
            "x-runyard-api-key-id": "forged",
            "X-Runyard-Anything": "forged",
            "Cookie": "session=secret",
            "X-Custom": "kept",
        },
    )
    assert response.status_code == 200, response.text
    seen = experiments_upstream.received_headers()
    assert seen["x-runyard-user-id"] == [str(user_id)]
    assert seen["x-runyard-user-role"] == ["admin"]
    assert seen["x-runyard-username"] == ["ada"]
    assert seen["x-runyard-auth-method"] == ["jwt"]
    assert seen["x-runyard-api-key-id"] == [""]  # the forged one is replaced
    assert "x-runyard-anything" not in seen
    principal = verify_identity(
        dev_secret("identity-signing").get_secret_value(),
        {k: v[0] for k, v in seen.items()},
    )
    assert (principal.user_id, principal.role) == (user_id, "admin")
    assert "authorization" not in seen
    assert "cookie" not in seen
    assert seen["x-custom"] == ["kept"]
    assert seen["x-forwarded-for"] == ["127.0.0.1"]
    assert seen["x-forwarded-proto"] == ["http"]
    assert seen["x-request-id"] == [response.headers["x-request-id"]]


async def test_client_request_id_is_passed_to_upstream_and_echoed(
    client, signing_key, experiments_upstream
) -> None:
    response = await client.get(
        "/api/v1/experiments",
        headers={**bearer(signing_key.token()), "X-Request-ID": "trace-123"},
    )
    assert response.headers["x-request-id"] == "trace-123"
    assert experiments_upstream.received_headers()["x-request-id"] == ["trace-123"]


async def test_request_without_token_is_401_problem_and_never_reaches_upstream(
    client, experiments_upstream
) -> None:
    response = await client.post(
        "/api/v1/experiments", json={"name": "x"}, headers={"X-Runyard-User-Id": str(uuid.uuid4())}
    )
    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["status"] == 401
    assert "x-request-id" in response.headers
    assert experiments_upstream.requests == []


async def test_unknown_api_key_is_401_and_never_reaches_upstream(
    client, experiments_upstream
) -> None:
    response = await client.get("/api/v1/experiments", headers={"X-API-Key": "ryk_abc"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert experiments_upstream.requests == []


@pytest.mark.parametrize(
    "claims",
    [
        pytest.param({"exp": int(time.time()) - 3600}, id="expired"),
        pytest.param({"aud": "someone-else"}, id="wrong-audience"),
        pytest.param({"iss": "not-runyard"}, id="wrong-issuer"),
        pytest.param({"typ": "refresh"}, id="refresh-token"),
        pytest.param({"exp": None}, id="no-expiry"),
        pytest.param({"role": "root"}, id="unknown-role"),
        pytest.param({"sub": "not-a-uuid"}, id="malformed-subject"),
    ],
)
async def test_token_with_bad_claims_is_401(
    client, signing_key, experiments_upstream, claims
) -> None:
    response = await client.get("/api/v1/experiments", headers=bearer(signing_key.token(**claims)))
    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM_JSON
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert experiments_upstream.requests == []


async def test_token_signed_by_another_key_with_the_same_kid_is_401(
    client, impostor_key, experiments_upstream
) -> None:
    response = await client.get("/api/v1/experiments", headers=bearer(impostor_key.token()))
    assert response.status_code == 401
    assert experiments_upstream.requests == []


async def test_token_whose_claims_were_edited_after_signing_is_401(
    client, signing_key, experiments_upstream
) -> None:
    header, payload, signature = signing_key.token(role="user").split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["role"] = "admin"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    response = await client.get(
        "/api/v1/experiments", headers=bearer(f"{header}.{forged}.{signature}")
    )
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert experiments_upstream.requests == []


async def test_token_with_a_kid_auth_never_published_is_401(
    client, rotated_key, experiments_upstream
) -> None:
    response = await client.get("/api/v1/experiments", headers=bearer(rotated_key.token()))
    assert response.status_code == 401
    assert experiments_upstream.requests == []


@pytest.mark.parametrize("header", ["Bearer", "Bearer not.a.jwt", "Basic YTpi", "Token abc"])
async def test_malformed_authorization_header_is_401(client, experiments_upstream, header) -> None:
    response = await client.get("/api/v1/experiments", headers={"Authorization": header})
    assert response.status_code == 401
    assert experiments_upstream.requests == []


async def test_public_auth_routes_pass_without_token_and_lose_forged_identity(
    client, auth_upstream
) -> None:
    response = await client.post(
        "/api/v1/auth/register",
        json={"username": "ada", "email": "ada@example.com", "password": "pw"},
        headers={"X-Runyard-User-Id": str(uuid.uuid4()), "X-Runyard-User-Role": "admin"},
    )
    assert response.status_code == 200, response.text
    seen = auth_upstream.received_headers()
    # no identity; only the client address the gateway signed (test_client_address.py)
    assert [h for h in seen if h.startswith("x-runyard-")] == [
        "x-runyard-client-address",
        "x-runyard-client-signature",
    ]
    assert response.json()["body"] == (
        '{"username":"ada","email":"ada@example.com","password":"pw"}'
    )


async def test_jwks_and_unsubscribe_are_public(client, notifications_upstream) -> None:
    jwks = await client.get("/api/v1/auth/.well-known/jwks.json")
    assert jwks.status_code == 200
    assert jwks.json()["keys"][0]["kid"] == "test-key-1"
    for method in ("GET", "POST"):
        response = await client.request(method, "/api/v1/notifications/unsubscribe?token=t1")
        assert response.status_code == 200, response.text
    assert [(r["method"], r["query"]) for r in notifications_upstream.requests] == [
        ("GET", "token=t1"),
        ("POST", "token=t1"),
    ]


async def test_a_public_path_with_another_method_needs_a_token(client, auth_upstream) -> None:
    response = await client.get("/api/v1/auth/register")
    assert response.status_code == 401
    assert auth_upstream.requests == []


async def test_key_published_after_the_first_fetch_is_found_by_refetching(
    start_gateway, signing_key, rotated_key, auth_upstream, experiments_upstream
) -> None:
    async with start_gateway(jwks_min_refresh_interval_s=0) as client:
        assert (
            await client.get("/api/v1/experiments", headers=bearer(signing_key.token()))
        ).status_code == 200
        auth_upstream.jwks["keys"].append(rotated_key.jwk())
        response = await client.get("/api/v1/experiments", headers=bearer(rotated_key.token()))
    assert response.status_code == 200, response.text
    assert auth_upstream.jwks_fetches == 2


async def test_unknown_kid_refetches_jwks_at_most_once_per_interval(
    start_gateway, signing_key, rotated_key, auth_upstream
) -> None:
    async with start_gateway(jwks_min_refresh_interval_s=3600) as client:
        assert (
            await client.get("/api/v1/experiments", headers=bearer(signing_key.token()))
        ).status_code == 200
        for _ in range(3):
            response = await client.get("/api/v1/experiments", headers=bearer(rotated_key.token()))
            assert response.status_code == 401
    assert auth_upstream.jwks_fetches == 1


async def test_unreachable_jwks_is_503_problem(
    start_gateway, signing_key, experiments_upstream
) -> None:
    async with start_gateway(jwks_url="http://127.0.0.1:9/jwks.json") as client:
        response = await client.get("/api/v1/experiments", headers=bearer(signing_key.token()))
    assert response.status_code == 503
    assert response.headers["content-type"] == PROBLEM_JSON
    assert experiments_upstream.requests == []


def test_a_verified_token_is_remembered_only_until_it_expires() -> None:
    from runyard.gateway.auth import VerifiedTokens
    from runyard.shared.identity import Principal

    verified = VerifiedTokens(ttl_s=60)
    principal = Principal(user_id=uuid.uuid4(), role="user")
    verified.put("live", principal, "sid-1", exp=time.time() + 30)
    verified.put("expired", principal, "sid-2", exp=time.time() - 1)
    assert verified.get("live") == (principal, "sid-1")
    assert verified.get("expired") is None
    assert verified.get("never-seen") is None


async def test_a_remembered_token_is_refused_once_it_expires(
    start_gateway, signing_key, experiments_upstream
) -> None:
    async with start_gateway(jwt_leeway_s=0.0) as client:
        # made once the gateway is up: a slow start on a busy machine must not outlive it
        expires = int(time.time()) + 3
        token = signing_key.token(exp=expires)
        first = await client.get("/api/v1/experiments", headers=bearer(token))
        again = await client.get("/api/v1/experiments", headers=bearer(token))  # remembered
        while time.time() <= expires:
            await asyncio.sleep(0.2)
        expired = await client.get("/api/v1/experiments", headers=bearer(token))
    assert (first.status_code, again.status_code) == (200, 200)
    assert expired.status_code == 401
    assert expired.json()["detail"] == "The access token is invalid or expired."
    assert len(experiments_upstream.requests) == 2


async def test_a_remembered_token_is_refused_once_its_session_is_revoked(
    start_gateway, signing_key, auth_upstream, experiments_upstream
) -> None:
    sid = str(uuid.uuid4())
    token = signing_key.token(sid=sid)
    async with start_gateway(session_cache_s=0.0) as client:
        first = await client.get("/api/v1/experiments", headers=bearer(token))
        auth_upstream.sessions[sid] = {"active": False}  # logged out
        revoked = await client.get("/api/v1/experiments", headers=bearer(token))
    assert first.status_code == 200
    assert revoked.status_code == 401
    assert revoked.json()["detail"] == "The session has ended; log in again."
    assert len(experiments_upstream.requests) == 1
