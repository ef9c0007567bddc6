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


async def test_experiment_crud_with_config_paths_and_events(client, db) -> None:
    from services.experiments.tests.experiments_helpers import (
        caller,
        fetch,
        outbox,
        write_epoch_events,
    )

    alice = caller()
    created = await client.post(
        "/api/v1/experiments",
        json={
            "name": "resnet-a",
            "model_type": "resnet18",
            "config": {"epochs": 50, "augment": {"noise": 0.1}},
            "hyperparameters": {"lr": 3e-4, "batch_size": 64},
            "notes": "first try",
            "model_path": "s3://models/resnet-a.pt",
        },
        headers=alice.headers,
    )
    assert created.status_code == 201, created.text
    experiment = created.json()
    assert experiment["config"] == {"epochs": 50, "augment": {"noise": 0.1}}
    url = f"/api/v1/experiments/{experiment['id']}"
    await client.post(
        f"{url}/runs",
        json={
            "runs": [
                {"epoch": 0, "val_loss": 0.5, "val_accuracy": 0.7},
                {"epoch": 1, "val_loss": 0.4, "val_accuracy": 0.6},
            ]
        },
        headers=alice.headers,
    )
    await write_epoch_events(db)  # the epoch-events worker's window ends

    patched = await client.patch(
        url,
        json={
            "onnx_path": "s3://models/resnet-a.onnx",
            "best_metric": "val_accuracy",
            "notes": None,
        },
        headers=alice.headers,
    )
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert (body["onnx_path"], body["notes"], body["best_mode"]) == (
        "s3://models/resnet-a.onnx",
        None,
        "max",
    )
    assert (body["best_epoch"], body["best_value"]) == (0, 0.7)  # recomputed for the new metric

    other = await client.post("/api/v1/experiments", json={"name": "b"}, headers=alice.headers)
    renamed = await client.patch(
        f"/api/v1/experiments/{other.json()['id']}",
        json={"name": "resnet-a"},
        headers=alice.headers,
    )
    assert renamed.status_code == 409
    assert (await client.patch(url, json={"name": None}, headers=alice.headers)).status_code == 422
    not_finite = await client.patch(
        url,
        content=b'{"config": {"lr": Infinity}}',
        headers={**alice.headers, "content-type": "application/json"},
    )
    assert not_finite.status_code == 422

    assert (await client.delete(url, headers=alice.headers)).status_code == 204
    assert (await client.get(url, headers=alice.headers)).status_code == 404
    runs = await fetch(db, "SELECT count(*) AS n FROM experiments.training_runs")
    assert runs[0]["n"] == 0
    events = [e for e in await outbox(db) if e["subject"] == experiment["id"]]
    assert [e["type"] for e in events] == [
        "experiment.created",
        "experiment.started",
        "experiment.epochs_logged",
        "experiment.updated",
        "experiment.deleted",
    ]
    # the state changes carry the experiment's version; epochs_logged reports progress, no state
    state = [e for e in events if e["type"] != "experiment.epochs_logged"]
    assert state[2]["data"]["changed"] == ["best_metric", "best_mode", "notes", "onnx_path"]
    assert [e["sequence"] for e in state] == ["1", "2", "3", "4"]
    assert "sequence" not in events[2]
