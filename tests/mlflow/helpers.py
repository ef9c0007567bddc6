"""What the MLflow tests share: the account (with the password, for HTTP Basic), the
credentials the client takes from its environment, polling, the mail sink, a webhook receiver.

``sign_up``, ``mails_to`` and the receiver follow ``tests/sdk/conftest.py`` and
``tests/e2e/helpers.py``; the whole-stack suites are separate packages that do not import each
other. The receiver here is threaded: the tests block on client scripts while the webhooks
service delivers.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default as default_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from standardwebhooks import Webhook

PASSWORD = "correct horse battery staple"


@dataclass
class Account:
    url: str
    id: str
    username: str
    email: str
    password: str
    token: str
    api_key: str

    def client(self) -> httpx.Client:
        """Runyard's own API with the access token."""
        return httpx.Client(
            base_url=f"{self.url}/api/v1",
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=30.0,
            trust_env=False,
        )

    @property
    def with_api_key(self) -> dict[str, str]:
        return {"MLFLOW_TRACKING_TOKEN": self.api_key}

    @property
    def with_access_token(self) -> dict[str, str]:
        return {"MLFLOW_TRACKING_TOKEN": self.token}

    @property
    def with_password(self) -> dict[str, str]:
        return {
            "MLFLOW_TRACKING_USERNAME": self.username,
            "MLFLOW_TRACKING_PASSWORD": self.password,
        }


def sign_up(gateway_url: str, *, prefix: str) -> Account:
    """A new user: registered, logged in, with an API key that reads and writes experiments."""
    name = f"{prefix}{uuid.uuid4().hex[:8]}"
    email = f"{name}@example.test"
    with httpx.Client(base_url=f"{gateway_url}/api/v1", timeout=30.0, trust_env=False) as api:
        registered = api.post(
            "/auth/register", json={"username": name, "email": email, "password": PASSWORD}
        )
        assert registered.status_code == 201, registered.text
        login = api.post("/auth/login", json={"login": name, "password": PASSWORD})
        assert login.status_code == 200, login.text
        token = login.json()["access_token"]
        key = api.post(
            "/auth/api-keys",
            json={
                "name": "mlflow client",
                "scopes": ["experiments:read", "experiments:write"],
                "current_password": PASSWORD,
            },
            headers={"Authorization": f"Bearer {token}"},
        )
        assert key.status_code == 201, key.text
    return Account(
        gateway_url, registered.json()["id"], name, email, PASSWORD, token, key.json()["key"]
    )


def api_key(account: Account, scopes: list[str]) -> str:
    """Another API key of the account, with these scopes."""
    with account.client() as api:
        key = api.post(
            "/auth/api-keys",
            json={"name": unique("key"), "scopes": scopes, "current_password": account.password},
        )
    assert key.status_code == 201, key.text
    secret: str = key.json()["key"]
    return secret


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def dashed(run_id: str) -> str:
    """An MLflow run id (32 hex digits) as Runyard's experiment id."""
    return str(uuid.UUID(hex=run_id))


def wait_until(check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what} (last: {result!r})")
        time.sleep(0.2)


def mails_to(mail_dir: Path, address: str) -> list[EmailMessage]:
    found = []
    for path in sorted(mail_dir.glob("*.eml")):
        message = BytesParser(policy=default_policy).parsebytes(path.read_bytes())
        if address in str(message["To"]):
            found.append(message)
    return found


@dataclass
class Receiver:
    url: str
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)


@contextlib.contextmanager
def serving_receiver() -> Iterator[Receiver]:
    """A real HTTP endpoint on loopback, in a thread, that records every webhook POST."""
    box = Receiver(url="")

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            box.requests.append((dict(self.headers.items()), body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    box.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield box
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def register_webhook(runyard: httpx.Client, receiver: Receiver, events: list[str]) -> str:
    """A generic endpoint at the receiver for ``events``; its signing secret."""
    hook = runyard.post(
        "/webhooks",
        json={
            "name": "mlflow tests",
            "provider_type": "generic",
            "url": receiver.url,
            "enabled_events": events,
        },
    )
    assert hook.status_code == 201, hook.text
    secret: str = hook.json()["secret"]
    return secret


def signed_deliveries(receiver: Receiver, secret: str, event_type: str) -> list[dict[str, Any]]:
    """The deliveries of ``event_type`` so far, in arrival order, each one's Standard Webhooks
    signature checked."""
    found = []
    for headers, body in list(receiver.requests):
        Webhook(secret).verify(body, headers)
        found.append(json.loads(body))
    return [e for e in found if e["type"] == event_type]
