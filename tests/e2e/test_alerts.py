"""An alert rule on the real stack, over HTTP only: a training run's epoch crosses the rule's
threshold, and its owner hears about it by email (the SMTP sink), in the in-app inbox and by a
signed webhook, each once; the API lists the alert and a backtest reports the same epoch."""

from __future__ import annotations

import json

import httpx
import pytest
from standardwebhooks import Webhook

from runyard.devstack import Stack

from .helpers import Receiver, User, eventually, mails_to

pytestmark = pytest.mark.e2e

SUMMARY = "val_accuracy reached 0.95 in pump-cnn: 0.951 (epoch 3)"


async def _async(value: object) -> object:
    return value


async def test_an_alert_reaches_its_owner_by_email_inbox_and_signed_webhook(
    stack: Stack, api: httpx.AsyncClient, user: User, receiver: Receiver
) -> None:
    hook = await api.post(
        "/api/v1/webhooks",
        json={
            "name": "alerts",
            "provider_type": "generic",
            "url": receiver.url,
            "enabled_events": ["alert.*"],
        },
        headers=user.auth,
    )
    assert hook.status_code == 201, hook.text
    secret = hook.json()["secret"]
    rule = await api.post(
        "/api/v1/alert-rules",
        json={
            "name": "accuracy target",
            "condition": {"kind": "threshold", "metric": "val_accuracy", "op": ">=", "value": 0.95},
        },
        headers=user.auth,
    )
    assert rule.status_code == 201, rule.text
    created = await api.post(
        "/api/v1/experiments", json={"name": "pump-cnn", "model_type": "cnn1d"}, headers=user.auth
    )
    assert created.status_code == 201, created.text
    experiment_id = created.json()["id"]
    for first, values in ((1, [0.90, 0.93]), (3, [0.951, 0.96])):
        runs = [{"epoch": first + i, "val_accuracy": v} for i, v in enumerate(values)]
        logged = await api.post(
            f"/api/v1/experiments/{experiment_id}/runs", json={"runs": runs}, headers=user.auth
        )
        assert logged.status_code == 201, logged.text

    def alert_posts() -> list[tuple[dict[str, str], bytes]]:
        return [(h, b) for h, b in receiver.requests if json.loads(b)["type"] == "alert.triggered"]

    await eventually(lambda: _async(alert_posts()))
    ((headers, body),) = alert_posts()
    Webhook(secret).verify(body, headers)  # raises if the signature is wrong
    event = json.loads(body)
    assert event["subject"] == experiment_id
    assert (event["data"]["summary"], event["data"]["epoch"]) == (SUMMARY, 3)

    mails = await eventually(
        lambda: _async(
            [m for m in mails_to(stack.mail_dir, user.email) if "val_accuracy" in m["Subject"]]
        )
    )
    assert [m["Subject"] for m in mails] == [f"[warning] {SUMMARY}"]

    async def inbox() -> list[dict]:
        found = await api.get("/api/v1/notifications/inbox", headers=user.auth)
        return [n for n in found.json()["items"] if n["event_type"] == "alert.triggered"]

    [note] = await eventually(inbox)
    assert SUMMARY in json.dumps(note)

    alerts = await api.get(
        "/api/v1/alerts", params={"experiment_id": experiment_id}, headers=user.auth
    )
    assert [(a["epoch"], a["summary"]) for a in alerts.json()["items"]] == [(3, SUMMARY)]
    backtest = await api.post(
        f"/api/v1/alert-rules/{rule.json()['id']}/backtest", json={}, headers=user.auth
    )
    assert [(f["epoch"], f["summary"]) for f in backtest.json()["firings"]] == [(3, SUMMARY)]
    assert len(alert_posts()) == 1
