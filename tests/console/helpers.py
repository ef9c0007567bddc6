"""What the console's whole-stack tests share: accounts made through the API, epochs logged
through it, mail taken from the stack's sink, screenshots kept under ``.data/``."""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import httpx
import pyotp

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / ".data" / "console-screenshots"
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
