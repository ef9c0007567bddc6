"""What the whole-stack tests share: polling, the mail sink, users, webhook receivers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

from aiohttp import web

from runyard.shared.testing import free_port


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


def link_token(message: EmailMessage) -> str:
    """The token of the reset or verification link in an account email."""
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    found = re.search(r"#token=([A-Za-z0-9_-]+)", str(part.get_content()))
    assert found, "no link in the email"
    return found[1]


async def take_mail(mail_dir: Path, address: str, subject: str) -> EmailMessage:
    """Wait for the email to ``address`` with ``subject``, and remove it from the sink (so a
    test counting the address's mail sees only its own)."""

    async def arrived() -> tuple[Path, EmailMessage] | None:
        return _find_mail(mail_dir, address, subject)

    path, message = await eventually(arrived)
    path.unlink()
    return message


def _find_mail(mail_dir: Path, address: str, subject: str) -> tuple[Path, EmailMessage] | None:
    for path in sorted(mail_dir.glob("*.eml")):
        message = BytesParser(policy=default_policy).parsebytes(path.read_bytes())
        if address in str(message["To"]) and message["Subject"] == subject:
            return path, message
    return None


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


def event_ids(receiver: Receiver) -> list[str]:
    return [json.loads(body)["id"] for _headers, body in receiver.requests]
