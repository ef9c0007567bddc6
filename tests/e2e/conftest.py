"""The whole stack, started from the test: embedded Postgres, Tansu, the SMTP sink, five services."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from aiohttp import web

from runyard.devstack import Stack
from runyard.shared.testing import free_port


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


async def eventually(check: Callable[[], Awaitable[Any]], *, timeout: float = 60.0) -> Any:
    """Poll ``check`` until it returns something truthy; the last falsy value fails the test."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last: {result!r})")
        await asyncio.sleep(0.2)


def mails_to(mail_dir: Path, address: str) -> list[EmailMessage]:
    found = []
    for path in sorted(mail_dir.glob("*.eml")):
        message = BytesParser(policy=default_policy).parsebytes(path.read_bytes())
        if address in str(message["To"]):
            found.append(message)
    return found


@dataclass
class User:
    id: str
    username: str
    email: str
    password: str
    token: str = ""

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture
async def user(api: httpx.AsyncClient, db: asyncpg.Connection) -> User:
    name = f"ada{uuid.uuid4().hex[:8]}"
    password = "correct horse battery staple"
    registered = await api.post(
        "/api/v1/auth/register",
        json={"username": name, "email": f"{name}@example.test", "password": password},
    )
    assert registered.status_code == 201, registered.text
    person = User(registered.json()["id"], name, f"{name}@example.test", password)
    login = await api.post("/api/v1/auth/login", json={"login": name, "password": password})
    assert login.status_code == 200, login.text
    person.token = login.json()["access_token"]
    return person


@dataclass
class Receiver:
    url: str
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)


@contextlib.asynccontextmanager
async def serving_receiver() -> AsyncIterator[Receiver]:
    """A real HTTP endpoint on loopback that records every webhook POST."""
    port = free_port()
    box = Receiver(url=f"http://127.0.0.1:{port}/hook")

    async def hook(request: web.Request) -> web.Response:
        box.requests.append((dict(request.headers), await request.read()))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield box
    finally:
        await runner.cleanup()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with serving_receiver() as box:
        yield box


@pytest.fixture
async def slack_receiver() -> AsyncIterator[Receiver]:
    """A second receiver, for a Slack-format endpoint."""
    async with serving_receiver() as box:
        yield box


def event_ids(receiver: Receiver) -> list[str]:
    return [json.loads(body)["id"] for _headers, body in receiver.requests]
