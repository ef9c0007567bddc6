"""What the console's whole-stack tests share: accounts made through the API, epochs logged
through it, mail taken from the stack's sink, screenshots kept under ``.data/``, an axe-core
accessibility check of a page, and a webhook receiver that checks signatures."""

from __future__ import annotations

import contextlib
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import httpx
import pyotp
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from runyard.shared.testing import free_port

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / ".data" / "console-screenshots"
#: axe-core, vendored with the console's static files (test-only, served like any script so the
#: page's CSP admits it)
AXE_URL = "/static/vendor/axe-core-4.14.1/axe.min.js"
#: the impacts a page may not have
BLOCKING_IMPACTS = ("serious", "critical")
PASSWORD = "correct horse battery staple"


@dataclass
class Account:
    username: str
    password: str
    token: str
    totp_secret: str | None = None

    @property
    def email(self) -> str:
        return f"{self.username}@example.test"

    def code(self, *, ahead_s: float = 30.0) -> str:
        """A TOTP code of the next step (the enabling code used the current one)."""
        assert self.totp_secret
        return str(pyotp.TOTP(self.totp_secret).at(time.time() + ahead_s))


def register(api: httpx.Client, prefix: str) -> Account:
    name = f"{prefix}{uuid.uuid4().hex[:8]}"
    created = api.post(
        "/api/v1/auth/register",
        json={"username": name, "email": f"{name}@example.test", "password": PASSWORD},
    )
    assert created.status_code == 201, created.text
    login = api.post("/api/v1/auth/login", json={"login": name, "password": PASSWORD})
    assert login.status_code == 200, login.text
    return Account(name, PASSWORD, login.json()["access_token"])


def enable_two_factor(api: httpx.Client, account: Account) -> None:
    auth = {"Authorization": f"Bearer {account.token}"}
    setup = api.post("/api/v1/auth/2fa/setup", headers=auth)
    assert setup.status_code == 200, setup.text
    account.totp_secret = setup.json()["secret"]
    code = pyotp.TOTP(account.totp_secret).now()
    enabled = api.post(
        "/api/v1/auth/2fa/enable",
        json={"code": code, "current_password": account.password},
        headers=auth,
    )
    if enabled.status_code == 422:  # an auth API without step-up for enabling 2FA
        enabled = api.post("/api/v1/auth/2fa/enable", json={"code": code}, headers=auth)
    assert enabled.status_code == 200, enabled.text


def as_user(api: httpx.Client, account: Account, method: str, path: str, **kw: Any) -> Any:
    response = api.request(
        method, f"/api/v1{path}", headers={"Authorization": f"Bearer {account.token}"}, **kw
    )
    assert response.status_code < 400, response.text
    return response.json() if response.content else None


def new_experiment(api: httpx.Client, account: Account, name: str, **fields: Any) -> str:
    created = as_user(api, account, "POST", "/experiments", json={"name": name, **fields})
    return str(created["id"])


def log_epochs(
    api: httpx.Client, account: Account, experiment_id: str, epochs: range, **extra: float
) -> None:
    runs = [
        {
            "epoch": e,
            "train_loss": 1.0 / (e + 1),
            "val_loss": 1.1 / (e + 1),
            "val_accuracy": min(0.99, 0.5 + e / 200),
            **extra,
        }
        for e in epochs
    ]
    for i in range(0, len(runs), 1000):
        as_user(
            api,
            account,
            "POST",
            f"/experiments/{experiment_id}/runs",
            json={"runs": runs[i : i + 1000]},
        )


def take_mail(
    mail_dir: Path | None, address: str, subject: str, timeout_s: float = 60
) -> EmailMessage:
    """Wait for the email to ``address`` with ``subject`` in the stack's sink, and remove it (so
    a later wait for the same subject sees only a newer one)."""
    assert mail_dir is not None, "the stack has no mail sink"
    deadline = time.monotonic() + timeout_s
    while True:
        for path in sorted(mail_dir.glob("*.eml")):
            message = BytesParser(policy=default_policy).parsebytes(path.read_bytes())
            if address in str(message["To"]) and message["Subject"] == subject:
                path.unlink()
                return message
        assert time.monotonic() < deadline, f"no email {subject!r} to {address}"
        time.sleep(0.2)


def account_link(message: EmailMessage) -> str:
    """The link of an account email (reset, verification): the page, the token in the
    fragment."""
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    found = re.search(r"\S+/account/[a-z-]+#token=[A-Za-z0-9_-]+", str(part.get_content()))
    assert found, "no account link in the email"
    return found[0]


def screenshot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def assert_accessible(page: Any, *, exclude: list[str] | None = None) -> None:
    """Run axe-core (WCAG 2.0/2.1 A and AA rules and its best practices) on the page as it is
    now and fail on any serious or critical violation, naming the rule and the elements."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.add_script_tag(url=AXE_URL)
    violations = page.evaluate(
        """async (exclude) => {
            const context = exclude.length ? {exclude: exclude.map((s) => [s])} : document;
            const result = await window.axe.run(context, {resultTypes: ["violations"]});
            return result.violations.map((v) => ({
                id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.slice(0, 5).map((n) => n.target.join(" ")),
            }));
        }""",
        exclude or [],
    )
    blocking = [v for v in violations if v["impact"] in BLOCKING_IMPACTS]
    assert blocking == [], f"accessibility violations on {page.url}: {blocking}"


def totp_code(secret: str, *, ahead_s: float = 0.0) -> str:
    return str(pyotp.TOTP(secret).at(time.time() + ahead_s))


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    signature_valid: bool


class WebhookReceiver:
    """A real HTTP endpoint on loopback, in a thread: it checks each POST's Standard Webhooks
    signature with the secret it is given, answers 200 ``signature valid`` or 401
    ``signature invalid`` (what the console shows as the attempt's answer), and keeps it."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.secret: str | None = None
        self.received: list[Received] = []

    def handle(self, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        valid = False
        if self.secret is not None:
            with contextlib.suppress(WebhookVerificationError):
                Webhook(self.secret).verify(body, headers)
                valid = True
        self.received.append(Received(headers, body, valid))
        return (200, b"signature valid") if valid else (401, b"signature invalid")


@contextlib.contextmanager
def webhook_receiver() -> Iterator[WebhookReceiver]:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    box = WebhookReceiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            status, answer = box.handle({k.lower(): v for k, v in self.headers.items()}, body)
            self.send_response(status)
            self.send_header("content-type", "text/plain")
            self.send_header("content-length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", box.port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield box
    finally:
        server.shutdown()
        server.server_close()
