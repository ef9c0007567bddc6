"""The whole user story of issue #9, over HTTP on the real stack.

Register, enable 2FA, create an API key; with the key create a dataset and an experiment, log 50
epochs and complete it. The owner gets the email at the SMTP sink, the generic endpoint a signed
Standard Webhooks POST, the Slack endpoint a Slack message. Then repeated bad logins lock the
account, and the owner gets an alert by email.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from email.message import EmailMessage

import asyncpg
import httpx
import pyotp
import pytest
from standardwebhooks import Webhook

from runyard.devstack import Stack

from .helpers import Receiver, User, eventually, mails_to

pytestmark = pytest.mark.e2e


async def _value(value: object) -> object:
    return value


def body_text(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


async def enable_two_factor(api: httpx.AsyncClient, user: User) -> pyotp.TOTP:
    setup = await api.post("/api/v1/auth/2fa/setup", headers=user.auth)
    assert setup.status_code == 200, setup.text
    totp = pyotp.TOTP(setup.json()["secret"])
    enabled = await api.post(
        "/api/v1/auth/2fa/enable",
        json={"code": totp.now(), "current_password": user.password},
        headers=user.auth,
    )
    assert enabled.status_code == 200, enabled.text
    assert len(enabled.json()["backup_codes"]) >= 8
    return totp


async def add_webhook(
    api: httpx.AsyncClient, user: User, receiver: Receiver, provider: str
) -> dict[str, str]:
    created = await api.post(
        "/api/v1/webhooks",
        json={
            "name": f"{provider} hook",
            "provider_type": provider,
            "url": receiver.url,
            "enabled_events": ["experiment.completed"],
        },
        headers=user.auth,
    )
    assert created.status_code == 201, created.text
    body: dict[str, str] = created.json()
    return body


async def test_a_researcher_trains_with_an_api_key_and_hears_about_it_everywhere(
    stack: Stack,
    api: httpx.AsyncClient,
    db: asyncpg.Connection,
    user: User,
    receiver: Receiver,
    slack_receiver: Receiver,
) -> None:
    totp = await enable_two_factor(api, user)
    without_code = await api.post(
        "/api/v1/auth/login", json={"login": user.username, "password": user.password}
    )
    assert without_code.status_code == 401
    assert without_code.json()["code"] == "two_factor_required"
    with_code = await api.post(
        "/api/v1/auth/login",
        # the code that enabled 2FA can't be used again: the authenticator's next one
        json={
            "login": user.username,
            "password": user.password,
            "totp_code": totp.at(time.time() + 30),
        },
    )
    assert with_code.status_code == 200, with_code.text
    user.token = with_code.json()["access_token"]

    key = await api.post(
        "/api/v1/auth/api-keys",
        json={
            "name": "training box",
            "scopes": ["experiments:read", "experiments:write"],
            "current_password": user.password,
        },
        headers=user.auth,
    )
    assert key.status_code == 201, key.text
    with_key = {"X-API-Key": key.json()["key"]}

    generic = await add_webhook(api, user, receiver, "generic")
    await add_webhook(api, user, slack_receiver, "slack")

    dataset = await api.post(
        "/api/v1/datasets",
        json={"name": "pump-vibration-e2e", "fault_types": ["normal", "imbalance"]},
        headers=with_key,
    )
    assert dataset.status_code == 201, dataset.text
    experiment = await api.post(
        "/api/v1/experiments",
        json={
            "name": "cnn1d on pump vibration",
            "model_type": "cnn1d",
            "dataset_id": dataset.json()["id"],
            "hyperparameters": {"lr": 0.001, "batch_size": 64},
        },
        headers=with_key,
    )
    assert experiment.status_code == 201, experiment.text
    experiment_id = experiment.json()["id"]
    started = await api.post(f"/api/v1/experiments/{experiment_id}/start", headers=with_key)
    assert started.status_code == 200, started.text
    for epoch in range(1, 51):
        logged = await api.post(
            f"/api/v1/experiments/{experiment_id}/runs",
            json={
                "runs": [
                    {
                        "epoch": epoch,
                        "train_loss": 1.0 / epoch,
                        "val_loss": 1.1 / epoch,
                        "val_accuracy": 0.5 + epoch / 110,
                    }
                ]
            },
            headers=with_key,
        )
        assert logged.status_code in (200, 201), logged.text
    runs = await api.get(f"/api/v1/experiments/{experiment_id}/runs?limit=500", headers=with_key)
    assert runs.status_code == 200, runs.text
    assert len(runs.json()["items"]) == 50
    done = await api.post(
        f"/api/v1/experiments/{experiment_id}/complete",
        json={"final_metrics": {"val_accuracy": 0.95}},
        headers=with_key,
    )
    assert done.status_code == 200, done.text

    # the owner's email
    def completion_mails() -> list[EmailMessage]:
        return [
            m
            for m in mails_to(stack.mail_dir, user.email)
            if "cnn1d on pump vibration" in str(m["Subject"])
        ]

    (mail,) = await eventually(lambda: _value(completion_mails()))
    assert "completed" in str(mail["Subject"]).lower()
    assert mail["List-Unsubscribe"]
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

    # the generic endpoint: one signed Standard Webhooks POST of the CloudEvent
    await eventually(lambda: _value(receiver.requests))
    ((headers, body),) = receiver.requests
    Webhook(generic["secret"]).verify(body, headers)
    event = json.loads(body)
    assert (event["type"], event["subject"]) == ("experiment.completed", experiment_id)
    assert event["data"]["total_epochs"] == 50

    # the Slack endpoint: a Slack message, not the CloudEvent
    await eventually(lambda: _value(slack_receiver.requests))
    ((_slack_headers, slack_body),) = slack_receiver.requests
    slack = json.loads(slack_body)
    assert "cnn1d on pump vibration" in slack["text"]
    assert isinstance(slack["blocks"], list) and slack["blocks"]
    assert "specversion" not in slack

    # exactly one email row and one successful delivery per endpoint for the event
    sent = await eventually(
        lambda: db.fetchval(
            "SELECT count(*) FROM notifications.email_logs WHERE event_id = $1 AND status = 'sent'",
            event["id"],
        )
    )
    assert sent == 1

    # every API-key request became an api_key.used event that auth counts (55: dataset,
    # experiment, start, 50 epochs, the runs list and complete)
    key_id = key.json()["id"]

    async def usage_total() -> int:
        usage = await api.get(f"/api/v1/auth/api-keys/{key_id}/usage", headers=user.auth)
        assert usage.status_code == 200, usage.text
        total: int = usage.json()["total_requests"]
        return total if total >= 55 else 0

    assert await eventually(usage_total) == 55

    # repeated bad logins lock the account and the owner gets an alert
    statuses = []
    for _ in range(8):
        refused = await api.post(
            "/api/v1/auth/login",
            json={"login": user.username, "password": "wrong password, again", "totp_code": "0"},
        )
        statuses.append(refused.status_code)
    assert statuses[0] == 401
    assert statuses[-1] in (423, 429)

    def lock_alerts() -> list[EmailMessage]:
        return [
            m for m in mails_to(stack.mail_dir, user.email) if "locked" in str(m["Subject"]).lower()
        ]

    (alert,) = await eventually(lambda: _value(lock_alerts()))
    assert user.username in body_text(alert)


async def test_a_digest_user_gets_one_email_for_several_completions_after_the_window(
    stack: Stack, api: httpx.AsyncClient, db: asyncpg.Connection, user: User
) -> None:
    hourly = await api.put(
        "/api/v1/notifications/preferences/experiment.completed",
        json={"email_frequency": "hourly"},
        headers=user.auth,
    )
    assert hourly.status_code == 200, hourly.text
    names = ["digest run a", "digest run b", "digest run c"]
    for name in names:
        created = await api.post(
            "/api/v1/experiments", json={"name": name, "model_type": "cnn1d"}, headers=user.auth
        )
        assert created.status_code == 201, created.text
        done = await api.post(
            f"/api/v1/experiments/{created.json()['id']}/complete",
            json={"final_metrics": {"val_accuracy": 0.9}},
            headers=user.auth,
        )
        assert done.status_code == 200, done.text

    # The e2e stack's "hourly" period is 10 s (conftest). The three completions usually fall in
    # one period and make one email; on a slow machine they may straddle a period's end, and
    # then each period has its own digest. Either way: one email per period, never one per event.
    async def all_included() -> list[asyncpg.Record] | None:
        rows = await db.fetch(
            "SELECT title, scheduled_for, digest_email_id FROM notifications.email_digest_queue "
            "WHERE user_id = $1 AND included_in_digest",
            uuid.UUID(user.id),
        )
        return rows if len(rows) == 3 else None

    rows = await eventually(all_included)
    periods: dict[object, set[object]] = {}
    for row in rows:
        periods.setdefault(row["scheduled_for"], set()).add(row["digest_email_id"])
    assert all(len(emails) == 1 for emails in periods.values()), periods
    mails = await eventually(
        lambda: _value(
            m if len(m := mails_to(stack.mail_dir, user.email)) == len(periods) else None
        )
    )
    assert all("digest" in str(mail["Subject"]).lower() for mail in mails)
    texts = [body_text(mail) for mail in mails]
    for scheduled_for in periods:
        group = [
            n
            for n in names
            if any(n in r["title"] for r in rows if r["scheduled_for"] == scheduled_for)
        ]
        assert group and any(all(n in text for n in group) for text in texts), (group, texts)
    assert all(any(name in text for text in texts) for name in names)
    await asyncio.sleep(3)  # nothing else follows: no per-event email
    assert len(mails_to(stack.mail_dir, user.email)) == len(periods)
