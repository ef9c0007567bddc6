from __future__ import annotations

import uuid

import asyncpg

from runyard.shared.db import asyncpg_dsn
from runyard.shared.testing import ServiceDatabase, identity_headers


async def outbox_events(db: ServiceDatabase) -> list[tuple[str, str]]:
    conn = await asyncpg.connect(asyncpg_dsn(db.admin_url))
    try:
        rows = await conn.fetch("SELECT topic, key FROM experiments.outbox ORDER BY id")
    finally:
        await conn.close()
    return [(r["topic"], r["key"]) for r in rows]


async def test_completing_an_experiment_writes_completed_event_to_outbox(client, db) -> None:
    owner = uuid.uuid4()
    headers = identity_headers(owner)
    created = await client.post(
        "/api/v1/experiments", json={"name": "cnn baseline", "model_type": "cnn1d"}, headers=headers
    )
    assert created.status_code == 201, created.text
    exp_id = created.json()["id"]
    done = await client.post(
        f"/api/v1/experiments/{exp_id}/complete",
        json={"final_metrics": {"val_accuracy": 0.93}, "best_epoch": 7, "total_epochs": 10},
        headers=headers,
    )
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "completed"
    assert await outbox_events(db) == [
        ("experiment.created", exp_id),
        ("experiment.completed", exp_id),
    ]


async def test_completing_twice_is_409_with_current_status_and_adds_no_event(client, db) -> None:
    headers = identity_headers(uuid.uuid4())
    exp_id = (await client.post("/api/v1/experiments", json={"name": "x"}, headers=headers)).json()[
        "id"
    ]
    assert (
        await client.post(f"/api/v1/experiments/{exp_id}/complete", headers=headers)
    ).status_code == 200
    again = await client.post(f"/api/v1/experiments/{exp_id}/complete", headers=headers)
    assert again.status_code == 409
    assert again.headers["content-type"] == "application/problem+json"
    assert again.json()["current_status"] == "completed"
    assert len(await outbox_events(db)) == 2


async def test_another_users_experiment_is_404(client) -> None:
    exp_id = (
        await client.post(
            "/api/v1/experiments", json={"name": "x"}, headers=identity_headers(uuid.uuid4())
        )
    ).json()["id"]
    other = await client.get(
        f"/api/v1/experiments/{exp_id}", headers=identity_headers(uuid.uuid4())
    )
    assert other.status_code == 404
    assert other.json()["status"] == 404


async def test_invalid_body_is_422_problem_and_changes_nothing(client, db) -> None:
    bad = await client.post(
        "/api/v1/experiments", json={"name": ""}, headers=identity_headers(uuid.uuid4())
    )
    assert bad.status_code == 422
    assert bad.json()["errors"]
    assert "x-request-id" in bad.headers
    assert await outbox_events(db) == []
