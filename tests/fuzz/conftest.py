"""One real stack for the fuzz suite, and the credentials the fuzzer calls the API with."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import httpx
import pytest

from runyard.auth.cli import AdminInput, create_admin
from runyard.devstack import Stack

from .helpers import Credentials, FuzzIdentities

PASSWORD = "correct horse battery staple"
ALL_USER_SCOPES = [
    "experiments:read",
    "experiments:write",
    "webhooks:read",
    "webhooks:write",
    "notifications:read",
    "notifications:write",
]


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with Stack.isolated(tmp_path_factory.mktemp("fuzz-stack")) as running:
        yield running


@pytest.fixture
async def db(stack: Stack) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(stack.admin_dsn)
    try:
        yield conn
    finally:
        await conn.close()


def _login(client: httpx.Client, login: str) -> str:
    answer = client.post("/api/v1/auth/login", json={"login": login, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["access_token"]
    return token


@pytest.fixture(scope="package")
def identities(stack: Stack) -> FuzzIdentities:
    """A normal user (bearer token), an API key of that user with every scope a user may hold,
    and an admin made the way operators make one (``python -m runyard.auth create-admin``)."""
    suffix = uuid.uuid4().hex[:8]
    with httpx.Client(base_url=stack.gateway_url, timeout=30.0) as client:
        name = f"fuzz{suffix}"
        registered = client.post(
            "/api/v1/auth/register",
            json={"username": name, "email": f"{name}@example.test", "password": PASSWORD},
        )
        assert registered.status_code == 201, registered.text
        user_id = registered.json()["id"]
        token = _login(client, name)
        bearer = {"Authorization": f"Bearer {token}"}
        key = client.post(
            "/api/v1/auth/api-keys",
            json={"name": "fuzzing", "scopes": ALL_USER_SCOPES, "current_password": PASSWORD},
            headers=bearer,
        )
        assert key.status_code == 201, key.text

        admin_name = f"root{suffix}"
        admin_id = asyncio.run(
            create_admin(
                stack.service_database_urls["auth"],
                AdminInput(
                    username=admin_name, email=f"{admin_name}@example.test", password=PASSWORD
                ),
            )
        )
        admin_token = _login(client, admin_name)
    return FuzzIdentities(
        user_token=Credentials("user bearer token", user_id, bearer),
        user_api_key=Credentials("user API key", user_id, {"X-API-Key": key.json()["key"]}),
        admin_token=Credentials(
            "admin bearer token", admin_id, {"Authorization": f"Bearer {admin_token}"}
        ),
    )


#: a path of each upstream, to tell a complete merged document from a partial one
EXPECTED_PATHS = (
    "/api/v1/admin/metrics",
    "/api/v1/auth/me",
    "/api/v1/experiments",
    "/api/v1/notifications/inbox",
    "/api/v1/webhooks",
)


@pytest.fixture(scope="package")
def openapi_document(stack: Stack) -> dict[str, Any]:
    """The gateway's merged document, as a client downloads it. The gateway leaves out an
    upstream that does not answer within ``GATEWAY_OPENAPI_FETCH_TIMEOUT_S`` (and caches that
    for ``GATEWAY_OPENAPI_CACHE_S``): on a busy machine, ask again until every service is in."""
    deadline = time.monotonic() + 90.0
    while True:
        answer = httpx.get(f"{stack.gateway_url}/openapi.json", timeout=30.0)
        assert answer.status_code == 200, answer.text
        document: dict[str, Any] = answer.json()
        missing = [p for p in EXPECTED_PATHS if p not in document["paths"]]
        if not missing:
            return document
        assert time.monotonic() < deadline, f"merged document still lacks {missing}"
        time.sleep(2.0)
