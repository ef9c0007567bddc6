"""Helpers shared by the auth tests: a movable clock, requests as users, database peeks."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import jwt

from runyard.shared.contracts.auth import EmailLinkRequested
from runyard.shared.db import asyncpg_dsn
from runyard.shared.events import EventPayload
from runyard.shared.identity import (
    Principal,
    internal_call_headers,
    signed_client_headers,
    signed_identity_headers,
)
from runyard.shared.settings import dev_secret
from runyard.shared.testing import ServiceDatabase

DEV_SECRET = dev_secret("identity-signing").get_secret_value()
#: AUTH_EMAIL_LINK_SECRET's and NOTIFICATIONS_EMAIL_LINK_SECRET's default
LINK_SECRET = dev_secret("email-link-token").get_secret_value()

PASSWORD = "correct horse battery"
NEW_PASSWORD = "staple tortoise violin"
REGISTER = "/api/v1/auth/register"
LOGIN = "/api/v1/auth/login"
REFRESH = "/api/v1/auth/refresh"
LOGOUT = "/api/v1/auth/logout"
ME = "/api/v1/auth/me"
SESSIONS = "/api/v1/auth/sessions"
REVOKE_ALL = "/api/v1/auth/sessions/revoke-all"
PASSWORD_RESET = "/api/v1/auth/password-reset"
PASSWORD_RESET_CONFIRM = "/api/v1/auth/password-reset/confirm"
VERIFY_EMAIL = "/api/v1/auth/verify-email"
API_KEYS = "/api/v1/auth/api-keys"
USERS = "/api/v1/auth/users"
VERIFY_KEY = "/internal/v1/api-keys/verify"


@dataclass
class FakeClock:
    current: datetime

    def now(self) -> datetime:
        return self.current

    def advance(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)


async def fetch(db: ServiceDatabase, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(asyncpg_dsn(db.admin_url))
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


async def execute(db: ServiceDatabase, query: str, *args: Any) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(db.admin_url))
    try:
        await conn.execute(query, *args)
    finally:
        await conn.close()


async def outbox_events(db: ServiceDatabase, topic: str | None = None) -> list[dict[str, Any]]:
    rows = await fetch(db, "SELECT topic, key, payload FROM auth.outbox ORDER BY id")
    return [
        {"topic": r["topic"], "key": r["key"], **json.loads(r["payload"])}
        for r in rows
        if topic is None or r["topic"] == topic
    ]


async def register(
    client: Any, username: str = "ada", email: str | None = None, password: str = PASSWORD
) -> dict[str, Any]:
    response = await client.post(
        REGISTER,
        json={
            "username": username,
            "email": email or f"{username}@example.org",
            "password": password,
        },
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def login(client: Any, login: str = "ada", password: str = PASSWORD, **extra: Any) -> Any:
    headers = extra.pop("headers", None)
    return await client.post(
        LOGIN, json={"login": login, "password": password, **extra}, headers=headers
    )


async def refresh(client: Any, token: str) -> Any:
    return await client.post(REFRESH, json={"refresh_token": token})


async def tokens_for(client: Any, username: str = "ada", **extra: Any) -> dict[str, Any]:
    response = await login(client, username, **extra)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def session_of(access_token: str) -> str:
    sid: str = jwt.decode(access_token, options={"verify_signature": False})["sid"]
    return sid


def as_user(
    user: dict[str, Any],
    *,
    role: str | None = None,
    tokens: dict[str, Any] | None = None,
    auth_method: str | None = None,
) -> dict[str, str]:
    """The headers the gateway sets for ``user`` (plus the session when ``tokens`` are given)."""
    principal = Principal(
        user_id=uuid.UUID(user["id"]),
        role=role or user["role"],
        username=user["username"],
        auth_method=auth_method or "jwt",
        session_id=session_of(tokens["access_token"]) if tokens is not None else "",
    )
    return dict(signed_identity_headers(DEV_SECRET, principal))


def from_client(address: str) -> dict[str, str]:
    """The gateway's signed statement that the request comes from ``address``."""
    return dict(signed_client_headers(DEV_SECRET, address))


async def create_key(client: Any, user: dict[str, Any], **body: Any) -> Any:
    """``POST /api-keys`` as ``user``, confirmed with the password unless the body says else."""
    payload = {"name": "ci", "scopes": ["experiments:read"], "current_password": PASSWORD, **body}
    payload = {k: v for k, v in payload.items() if v is not None}
    return await client.post(API_KEYS, json=payload, headers=as_user(user))


def link_token(event: dict[str, Any]) -> str:
    """The token in the link an email-link event stands for, derived from the event as the
    notifications service derives it (the event itself never carries it)."""
    contract = EventPayload.registry[(event["type"], 1)]
    payload = contract.model_validate(event["data"])
    assert isinstance(payload, EmailLinkRequested)
    return payload.link_token(LINK_SECRET)


def internal(method: str, path: str) -> dict[str, str]:
    """The gateway's signature for a call to ``/internal/v1/...``."""
    return internal_call_headers(DEV_SECRET, method=method, path=path)


async def verify_key(client: Any, key: str) -> Any:
    return await client.post(VERIFY_KEY, json={"key": key}, headers=internal("POST", VERIFY_KEY))


async def session_status(client: Any, sid: str) -> Any:
    path = f"/internal/v1/sessions/{sid}"
    return await client.get(path, headers=internal("GET", path))


async def make_admin(client: Any, db: ServiceDatabase, username: str = "root") -> dict[str, Any]:
    user = await register(client, username)
    await execute(db, "UPDATE auth.users SET role = 'admin' WHERE id = $1", uuid.UUID(user["id"]))
    return {**user, "role": "admin"}
