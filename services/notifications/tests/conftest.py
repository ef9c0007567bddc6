from __future__ import annotations

import email
import email.policy
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from runyard.notifications.config import Settings
from runyard.notifications.mailer import Mailer
from runyard.notifications.main import create_app
from runyard.shared.db import create_engine, create_sessionmaker
from runyard.shared.testing import ServiceDatabase, free_port, running_app


@dataclass
class SmtpSink:
    """A real SMTP server (aiosmtpd) that records what it accepts, or answers ``reply``."""

    port: int
    reply: str = "250 OK"
    #: recipient -> the reply to a message for them (else ``reply``)
    replies: dict[str, str] = field(default_factory=dict)
    envelopes: list[Envelope] = field(default_factory=list)
    #: the client (host, port) of each connection that delivered a message
    sessions: set[Any] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        reply = self.replies.get(envelope.rcpt_tos[0], self.reply)
        if not reply.startswith("250"):
            return reply
        with self.lock:
            self.envelopes.append(envelope)
            self.sessions.add(session.peer)
        return "250 OK"

    def messages(self) -> list[EmailMessage]:
        with self.lock:
            raw = [e.original_content or b"" for e in self.envelopes]
        return [email.message_from_bytes(r, policy=email.policy.default) for r in raw]  # type: ignore[misc]


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    sink = SmtpSink(port=free_port())
    controller = Controller(sink, hostname="127.0.0.1", port=sink.port)
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()


@pytest.fixture
async def db(make_service_database: Any) -> ServiceDatabase:
    database: ServiceDatabase = await make_service_database(
        "runyard.notifications", "notifications"
    )
    return database


@pytest.fixture
def settings(db: ServiceDatabase, smtp_sink: SmtpSink) -> Settings:
    return Settings(
        environment="test",
        database_url=db.url,
        smtp_url=smtp_sink.url,
        smtp_timeout_s=10.0,
        run_workers=False,
    )


@pytest.fixture
async def sessionmaker(db: ServiceDatabase) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(db.url, pool_size=2)
    try:
        yield create_sessionmaker(engine, schema="notifications")
    finally:
        await engine.dispose()


@pytest.fixture
def mailer(settings: Settings) -> Mailer:
    return Mailer.from_settings(settings)


@pytest.fixture
async def client(settings: Settings, kafka_bootstrap: str) -> AsyncIterator[Any]:
    app_settings = settings.model_copy(update={"kafka_bootstrap_servers": kafka_bootstrap})
    async with running_app(create_app(app_settings)) as c:
        yield c
