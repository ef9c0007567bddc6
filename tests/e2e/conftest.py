"""The whole stack, started from the test: embedded Postgres, Tansu, the SMTP sink, five services."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import httpx
import pytest

from runyard.devstack import Stack

from .helpers import Receiver, User, link_token, serving_receiver, take_mail


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # "hourly" digests every 10 s, so a digest user gets one within the test
    short_digests = {
        "NOTIFICATIONS_DIGEST_HOURLY_PERIOD_S": "10",
        "NOTIFICATIONS_DIGEST_POLL_INTERVAL_S": "1",
    }
    with Stack.isolated(tmp_path_factory.mktemp("e2e-stack"), extra_env=short_digests) as running:
        yield running


@pytest.fixture
async def api(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.gateway_url, timeout=30.0) as client:
        yield client


@pytest.fixture
async def db(stack: Stack) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(stack.admin_dsn)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def user(stack: Stack, api: httpx.AsyncClient, db: asyncpg.Connection) -> User:
    name = f"ada{uuid.uuid4().hex[:8]}"
    password = "correct horse battery staple"
    registered = await api.post(
        "/api/v1/auth/register",
        json={"username": name, "email": f"{name}@example.test", "password": password},
    )
    assert registered.status_code == 201, registered.text
    person = User(registered.json()["id"], name, f"{name}@example.test", password)
    # every new account is mailed a verification link: follow it, as its owner would
    mail = await take_mail(stack.mail_dir, person.email, "Verify your Runyard email address")
    verified = await api.post("/api/v1/auth/verify-email", json={"token": link_token(mail)})
    assert verified.status_code == 204, verified.text
    login = await api.post("/api/v1/auth/login", json={"login": name, "password": password})
    assert login.status_code == 200, login.text
    person.token = login.json()["access_token"]
    return person


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with serving_receiver() as box:
        yield box


@pytest.fixture
async def slack_receiver() -> AsyncIterator[Receiver]:
    """A second receiver, for a Slack-format endpoint."""
    async with serving_receiver() as box:
        yield box
