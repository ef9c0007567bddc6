"""Builders and database peeks shared by the webhooks tests."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import asyncpg
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from standardwebhooks import Webhook

from runyard.shared.contracts.notifications import NotificationPreferenceUpdated
from runyard.shared.db import asyncpg_dsn
from runyard.shared.events import CloudEvent
from runyard.shared.testing import ServiceDatabase, identity_headers
from runyard.shared.testing.events import contract_event
from runyard.webhooks.consumers import handlers

Sessionmaker = async_sessionmaker[AsyncSession]
HANDLERS = handlers()
#: URL -> signing secrets handed out for it (``create_webhook`` fills it). The ``receiver``
#: fixture verifies every signed request it got against them with ``standardwebhooks``.
SIGNING_SECRETS: dict[str, list[str]] = {}


def preference_updated(
    user: uuid.UUID, event_type: str, *, webhook: bool = True, slack: bool = True
) -> CloudEvent:
    return contract_event(
        NotificationPreferenceUpdated(
            user_id=user,
            notification_event_type=event_type,
            email_enabled=True,
            in_app_enabled=True,
            slack_enabled=slack,
            webhook_enabled=webhook,
            email_frequency="immediate",
        ),
        subject=user,
    )


async def create_webhook(client: Any, owner: uuid.UUID, url: str, **fields: Any) -> dict[str, Any]:
    answer = await client.post(
        "/api/v1/webhooks",
        json={"name": "hook", "url": url, "enabled_events": ["experiment.*"], **fields},
        headers=identity_headers(owner),
    )
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    SIGNING_SECRETS[url] = [body["secret"]]
    return body


def verify_signed_requests(receiver: Receiver) -> int:
    """Every request that carries Standard Webhooks headers verifies with a secret handed out
    for its URL. Returns how many were checked."""
    checked = 0
    for request in receiver.requests:
        if "webhook-signature" not in request.headers:
            continue
        secrets = [
            secret
            for url, handed_out in SIGNING_SECRETS.items()
            if (urlsplit(url).port, urlsplit(url).path) == (receiver.port, request.path)
            for secret in handed_out
        ]
        assert secrets, f"no secret known for {request.path}"
        errors = []
        for secret in secrets:
            try:
                Webhook(secret).verify(request.body, request.headers)
                break
            except Exception as exc:
                errors.append(exc)
        else:
            raise AssertionError(f"{request.path}: no secret verifies the request: {errors}")
        checked += 1
    return checked


async def consume(sessionmaker: Sessionmaker, event: CloudEvent) -> None:
    """Run the service's handler for ``event`` in one transaction, as the consumer does."""
    async with sessionmaker() as session, session.begin():
        await HANDLERS[event.type](session, event, event.payload())


async def eventually(check: Any, timeout: float = 30.0) -> Any:
    """Poll ``await check()`` until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        found = await check()
        if found:
            return found
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.05)


async def query(db: ServiceDatabase, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(asyncpg_dsn(db.admin_url))
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def deliveries(db: ServiceDatabase) -> list[asyncpg.Record]:
    return await query(
        db,
        "SELECT *, extract(epoch FROM next_attempt_at - now()) AS due_in "
        "FROM webhooks.webhook_deliveries ORDER BY created_at",
    )


async def logs(db: ServiceDatabase) -> list[asyncpg.Record]:
    return await query(db, "SELECT * FROM webhooks.webhook_logs ORDER BY sent_at")


async def endpoint(db: ServiceDatabase, webhook_id: str) -> asyncpg.Record:
    [row] = await query(
        db,
        "SELECT *, extract(epoch FROM next_send_at - now()) AS held_for "
        "FROM webhooks.webhook_configurations WHERE id = $1",
        uuid.UUID(webhook_id),
    )
    return row


async def outbox(db: ServiceDatabase) -> list[dict[str, Any]]:
    rows = await query(db, "SELECT * FROM webhooks.outbox ORDER BY id")
    return [{**row, "payload": json.loads(row["payload"])} for row in rows]


async def make_due(db: ServiceDatabase) -> None:
    """Time passes: every pending delivery and every held endpoint is due now."""
    await query(
        db,
        "UPDATE webhooks.webhook_deliveries SET next_attempt_at = now() WHERE status = 'pending'",
    )
    await query(db, "UPDATE webhooks.webhook_configurations SET next_send_at = NULL")


@dataclass
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None
    #: Answer only once the test ends (a receiver that hangs).
    hang: bool = False


@dataclass
class Receiver:
    """A real HTTP server on 127.0.0.1 that records every request.

    Each path answers the replies scripted for it (``script``) in order, then its entry in
    ``statuses`` (default 200). A 3xx answers with a ``Location`` pointing at ``/redirected``.
    """

    base_url: str = ""
    port: int = 0
    requests: list[ReceivedRequest] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    scripts: dict[str, list[Reply]] = field(default_factory=dict)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def script(self, path: str, *replies: Reply) -> None:
        self.scripts.setdefault(path, []).extend(replies)

    def received(self, path: str) -> list[ReceivedRequest]:
        return [r for r in self.requests if r.path == path]

    async def wait_for(self, count: int, timeout: float = 30.0) -> list[ReceivedRequest]:
        async def enough() -> None:
            while len(self.requests) < count:
                self.arrived.clear()
                await self.arrived.wait()

        await asyncio.wait_for(enough(), timeout)
        return self.requests

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(
            ReceivedRequest(
                request.method, request.path, dict(request.headers), await request.read()
            )
        )
        self.arrived.set()
        queued = self.scripts.get(request.path)
        reply = queued.pop(0) if queued else Reply(self.statuses.get(request.path, 200))
        if reply.hang:
            await self.release.wait()
        headers = dict(reply.headers)
        if 300 <= reply.status < 400:
            headers.setdefault("Location", self.url("/redirected"))
        text = reply.body if reply.body is not None else f"answered {reply.status}"
        return web.Response(status=reply.status, text=text, headers=headers)
