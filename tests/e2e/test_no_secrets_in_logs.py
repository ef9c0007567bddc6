"""No secret a user creates or sends reaches the request logs or any service's log, on the real
stack: 2FA secrets and backup codes, API keys, access and refresh tokens, a Slack webhook URL,
custom webhook header values and webhook signing secrets.

Beside the ordinary flows, the client here also puts secrets where a careless client would:
its API key and the Slack URL in ``X-Request-ID`` (bound to every log line of that request, in
the gateway and in the service behind it) and secrets in query parameters.
"""

from __future__ import annotations

import json
import secrets
import uuid
from typing import Any

import asyncpg
import httpx
import pyotp
import pytest

from runyard.devstack import Stack

from .helpers import Receiver, User, eventually

pytestmark = pytest.mark.e2e


async def make_admin(api: httpx.AsyncClient, db: asyncpg.Connection) -> dict[str, str]:
    """A second user, made admin in the database (the gateway reads the role from auth)."""
    name = f"root{uuid.uuid4().hex[:8]}"
    password = "correct horse battery staple"
    registered = await api.post(
        "/api/v1/auth/register",
        json={"username": name, "email": f"{name}@example.test", "password": password},
    )
    assert registered.status_code == 201, registered.text
    await db.execute("UPDATE auth.users SET role = 'admin' WHERE username = $1", name)
    login = await api.post("/api/v1/auth/login", json={"login": name, "password": password})
    assert login.status_code == 200, login.text
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


async def all_request_logs(api: httpx.AsyncClient, admin: dict[str, str]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    cursor = ""
    while True:
        page = await api.get(
            "/api/v1/admin/request-logs", params={"limit": 500, "cursor": cursor}, headers=admin
        )
        assert page.status_code == 200, page.text
        rows += page.json()["items"]
        cursor = page.json()["next_cursor"] or ""
        if not cursor:
            return rows


async def test_no_secret_reaches_the_request_logs_or_any_service_log(
    api: httpx.AsyncClient, user: User, db: asyncpg.Connection, stack: Stack, receiver: Receiver
) -> None:
    found: dict[str, str] = {"password": user.password, "access token": user.token}

    # a second session, its refresh token used once
    login = await api.post(
        "/api/v1/auth/login", json={"login": user.username, "password": user.password}
    )
    assert login.status_code == 200, login.text
    found["refresh token"] = login.json()["refresh_token"]
    refreshed = await api.post(
        "/api/v1/auth/refresh", json={"refresh_token": found["refresh token"]}
    )
    assert refreshed.status_code == 200, refreshed.text
    found["refreshed access token"] = refreshed.json()["access_token"]
    found["refreshed refresh token"] = refreshed.json()["refresh_token"]

    # two-factor authentication: the secret, its otpauth:// URI, the backup codes
    setup = await api.post("/api/v1/auth/2fa/setup", headers=user.auth)
    assert setup.status_code == 200, setup.text
    found["totp secret"] = setup.json()["secret"]
    found["otpauth uri"] = setup.json()["otpauth_uri"]
    enabled = await api.post(
        "/api/v1/auth/2fa/enable",
        json={"code": pyotp.TOTP(found["totp secret"]).now(), "current_password": user.password},
        headers=user.auth,
    )
    assert enabled.status_code == 200, enabled.text
    for index, code in enumerate(enabled.json()["backup_codes"]):
        found[f"backup code {index}"] = code

    # an API key, used, and put in X-Request-ID and in a query parameter by a careless client
    scopes = ["experiments:read", "experiments:write", "webhooks:read", "webhooks:write"]
    confirm = {"current_password": user.password}
    created = await api.post(
        "/api/v1/auth/api-keys",
        json={"name": "box", "scopes": scopes, **confirm},
        headers=user.auth,
    )
    assert created.status_code == 201, created.text
    key = found["api key"] = created.json()["key"]
    second = await api.post(
        "/api/v1/auth/api-keys",
        json={"name": "box 2", "scopes": scopes, **confirm},
        headers={**user.auth, "X-Request-ID": key},  # auth logs the new key's creation with it
    )
    assert second.status_code == 201, second.text
    found["second api key"] = second.json()["key"]
    listed = await api.get(
        "/api/v1/experiments", params={"api_key": key, "limit": 5}, headers={"X-API-Key": key}
    )
    assert listed.status_code == 200, listed.text

    # a Slack webhook, with a custom header, sent with its URL as request id
    slack_path = f"T{secrets.token_hex(5).upper()}/B{secrets.token_hex(5).upper()}/" + (
        secrets.token_urlsafe(18)
    )
    slack_url = f"https://hooks.slack.com/services/{slack_path}"
    found["slack url path"] = slack_path
    found["slack header value"] = f"hv-{secrets.token_urlsafe(24)}"
    slack = await api.post(
        "/api/v1/webhooks",
        json={
            "name": "team channel",
            "provider_type": "slack",
            "url": slack_url,
            "enabled_events": ["experiment.*"],
            "settings": {"headers": {"X-Team-Token": found["slack header value"]}},
        },
        headers={"X-API-Key": key, "X-Request-ID": slack_url},
    )
    assert slack.status_code == 201, slack.text
    found["slack signing secret"] = slack.json()["secret"]

    # a generic webhook whose custom Authorization header really goes out with a delivery
    found["receiver header value"] = f"rv-{secrets.token_urlsafe(24)}"
    generic = await api.post(
        "/api/v1/webhooks",
        json={
            "name": "ci",
            "url": receiver.url,
            "enabled_events": ["experiment.*"],
            "settings": {"headers": {"Authorization": f"Token {found['receiver header value']}"}},
        },
        headers={"X-API-Key": key},
    )
    assert generic.status_code == 201, generic.text
    found["generic signing secret"] = generic.json()["secret"]
    experiment = await api.post(
        "/api/v1/experiments", json={"name": "secrets stay out"}, headers={"X-API-Key": key}
    )
    assert experiment.status_code == 201, experiment.text

    async def delivered() -> bool:
        return any(
            headers.get("Authorization") == f"Token {found['receiver header value']}"
            for headers, _body in receiver.requests
        )

    await eventually(delivered)

    # what an admin reads, once the gateway wrote the requests above
    admin = await make_admin(api, db)

    async def logged() -> list[dict[str, Any]] | None:
        rows = await all_request_logs(api, admin)
        webhooks = [r for r in rows if r["endpoint"] == "/api/v1/webhooks"]
        return rows if len(webhooks) >= 2 else None

    request_logs = json.dumps(await eventually(logged))
    stored = json.dumps(
        [
            dict(r)
            for table in ("api_request_logs", "system_logs")
            for r in await db.fetch(f"SELECT * FROM gateway.{table}")
        ],
        default=str,
    )
    service_logs = {
        name: stack.log_path(name).read_text(errors="replace") for name in stack.instances
    }

    assert "otpauth://" in json.dumps(setup.json())  # what the user saw, for contrast
    # the lines that carried the key and the Slack URL as request id are there, redacted
    assert '"request_id": "ry_[redacted]"' in service_logs["auth"]
    assert '"request_id": "https://hooks.slack.com/[redacted]"' in service_logs["webhooks"]
    for what, secret in found.items():
        assert secret not in request_logs, f"{what} in /api/v1/admin/request-logs"
        assert secret not in stored, f"{what} in the gateway's log tables"
        for name, text in service_logs.items():
            assert secret not in text, f"{what} in the log of {name}"
