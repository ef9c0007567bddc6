"""The model registry and prediction log on the real stack, over HTTP only: a version made from
an experiment's uploaded artifact, the champion alias set and moved; the owner hears of each move
by email (the SMTP sink), in the in-app inbox and by a signed webhook; predictions logged to the
version are checked against its input schema, stored, and summed up by the stats read."""

from __future__ import annotations

import hashlib
import json

import httpx
import pytest
from standardwebhooks import Webhook

from runyard.devstack import Stack

from .helpers import Receiver, User, eventually, mails_to

pytestmark = pytest.mark.e2e

INPUT_SCHEMA = {
    "type": "object",
    "properties": {"pressure": {"type": "number"}, "flow": {"type": "number"}},
    "required": ["pressure", "flow"],
}


async def _async(value: object) -> object:
    return value


async def test_an_alias_move_reaches_its_owner_and_predictions_are_summed_up(
    stack: Stack, api: httpx.AsyncClient, user: User, receiver: Receiver
) -> None:
    hook = await api.post(
        "/api/v1/webhooks",
        json={
            "name": "registry",
            "provider_type": "generic",
            "url": receiver.url,
            "enabled_events": ["model_version.alias_set"],
        },
        headers=user.auth,
    )
    assert hook.status_code == 201, hook.text
    secret = hook.json()["secret"]
    created = await api.post(
        "/api/v1/experiments", json={"name": "pump-cnn", "model_type": "cnn1d"}, headers=user.auth
    )
    assert created.status_code == 201, created.text
    experiment_id = created.json()["id"]
    weights = b"\x00\x01" * 2048
    uploaded = await api.put(
        f"/api/v1/experiments/{experiment_id}/artifacts/model.bin",
        content=weights,
        headers={**user.auth, "content-type": "application/octet-stream"},
    )
    assert uploaded.status_code == 201, uploaded.text

    model = await api.post("/api/v1/models", json={"name": "pump-cnn"}, headers=user.auth)
    assert model.status_code == 201, model.text
    model_id = model.json()["id"]
    versions = []
    for _ in range(2):
        version = await api.post(
            f"/api/v1/models/{model_id}/versions",
            json={
                "experiment_id": experiment_id,
                "artifact_path": "model.bin",
                "input_schema": INPUT_SCHEMA,
            },
            headers=user.auth,
        )
        assert version.status_code == 201, version.text
        versions.append(version.json())
    assert [v["version"] for v in versions] == [1, 2]
    assert {v["status"] for v in versions} == {"ready"}
    assert versions[0]["sha256"] == hashlib.sha256(weights).hexdigest()
    assert versions[0]["size"] == len(weights)

    for number in (1, 2):
        moved = await api.put(
            f"/api/v1/models/{model_id}/aliases/champion",
            json={"version": number},
            headers=user.auth,
        )
        assert moved.status_code == 200, moved.text
    assert moved.json() == {"alias": "champion", "version": 2, "previous_version": 1}
    # the version holding the alias cannot be deleted
    refused = await api.delete(f"/api/v1/models/{model_id}/versions/2", headers=user.auth)
    assert refused.status_code == 409, refused.text

    def alias_posts() -> list[tuple[dict[str, str], bytes]]:
        return [
            (h, b)
            for h, b in receiver.requests
            if json.loads(b)["type"] == "model_version.alias_set"
        ]

    await eventually(lambda: _async(len(alias_posts()) == 2))
    moves = []
    for headers, body in alias_posts():
        Webhook(secret).verify(body, headers)  # raises if the signature is wrong
        data = json.loads(body)["data"]
        moves.append((data["model_version"], data["previous_version"]))
    assert sorted(moves, key=lambda move: move[0]) == [(1, None), (2, 1)]

    mails = await eventually(
        lambda: _async(
            [m for m in mails_to(stack.mail_dir, user.email) if "champion" in m["Subject"]]
        )
    )
    subjects = " | ".join(m["Subject"] for m in mails)
    assert "champion of pump-cnn" in subjects

    async def inbox() -> list[dict]:
        found = await api.get("/api/v1/notifications/inbox", headers=user.auth)
        return [n for n in found.json()["items"] if n["event_type"] == "model_version.alias_set"]

    notes = await eventually(inbox)
    assert "champion of pump-cnn" in json.dumps(notes)

    # predictions: checked against the input schema (nothing written on a mismatch), then stored
    predictions_url = "/api/v1/models/pump-cnn/versions/2/predictions"
    bad = await api.post(
        predictions_url,
        json={
            "predictions": [
                {"input": {"pressure": 1.0, "flow": 2.0}, "latency_ms": 3.0},
                {"input": {"pressure": "high"}, "latency_ms": 3.0},
            ]
        },
        headers=user.auth,
    )
    assert bad.status_code == 422, bad.text
    assert bad.headers["content-type"].startswith("application/problem+json")
    assert "1" in json.dumps(bad.json())  # names the row of the first mismatch
    batch = [
        {
            "input": {"pressure": float(i), "flow": 1.5},
            "output": {"fault": i % 2 == 0},
            "confidence": 0.5 + i / 200,
            "latency_ms": float(10 + i),
            **({"error": "timeout"} if i == 0 else {}),
        }
        for i in range(100)
    ]
    logged = await api.post(predictions_url, json={"predictions": batch}, headers=user.auth)
    assert logged.status_code in (200, 201), logged.text
    recent = await api.get(predictions_url, params={"limit": 10}, headers=user.auth)
    assert recent.status_code == 200, recent.text
    assert len(recent.json()["items"]) == 10
    stats = await api.get(f"{predictions_url}/stats", headers=user.auth)
    assert stats.status_code == 200, stats.text
    figures = stats.json()
    assert (figures["count"], figures["errors"]) == (100, 1)
    assert figures["latency_ms"]["p50"] == pytest.approx(59.5)
