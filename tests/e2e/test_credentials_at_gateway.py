"""API keys and sessions end to end: auth issues and revokes, the gateway enforces."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from .helpers import User

pytestmark = pytest.mark.e2e

#: GATEWAY_API_KEY_CACHE_S and GATEWAY_SESSION_CACHE_S default to 5 s
CACHE_S = 5.0


async def test_api_key_works_within_its_scopes_and_stops_after_revocation(
    api: httpx.AsyncClient, user: User
) -> None:
    created = await api.post(
        "/api/v1/auth/api-keys",
        json={
            "name": "training box",
            "scopes": ["experiments:read", "experiments:write"],
            "current_password": user.password,
        },
        headers=user.auth,
    )
    assert created.status_code == 201, created.text
    key = {"X-API-Key": created.json()["key"]}
    assert created.json()["key"].startswith("ry_")

    made = await api.post("/api/v1/experiments", json={"name": "by key"}, headers=key)
    assert made.status_code == 201, made.text
    assert made.json()["owner_id"] == user.id
    no_scope = await api.post(
        "/api/v1/webhooks",
        json={"name": "x", "url": "https://example.com/h", "enabled_events": ["*"]},
        headers=key,
    )
    assert no_scope.status_code == 403
    assert no_scope.json()["required_scope"] == "webhooks:write"

    revoked = await api.delete(f"/api/v1/auth/api-keys/{created.json()['id']}", headers=user.auth)
    assert revoked.status_code == 204
    await asyncio.sleep(CACHE_S + 0.5)
    refused = await api.get(f"/api/v1/experiments/{made.json()['id']}", headers=key)
    assert refused.status_code == 401
    assert refused.headers["content-type"] == "application/problem+json"


async def test_token_of_a_logged_out_session_is_refused_at_the_gateway(
    api: httpx.AsyncClient, user: User
) -> None:
    assert (await api.get("/api/v1/auth/me", headers=user.auth)).status_code == 200
    assert (await api.post("/api/v1/auth/logout", headers=user.auth)).status_code == 204
    await asyncio.sleep(CACHE_S + 0.5)
    after = await api.get("/api/v1/auth/me", headers=user.auth)
    assert after.status_code == 401
