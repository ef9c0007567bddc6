"""The experiment lifecycle: every (status, action) pair, timestamps, and the events."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from runyard.experiments import users
from services.experiments.tests.experiments_helpers import act, event_types, new_experiment, outbox

STATUSES = ["pending", "running", "paused", "completed", "failed", "cancelled"]
ACTIONS = ["start", "pause", "resume", "complete", "fail", "cancel"]

#: how to bring a new (pending) experiment into each status
REACH = {
    "pending": [],
    "running": ["start"],
    "paused": ["start", "pause"],
    "completed": ["complete"],
    "failed": ["fail"],
    "cancelled": ["cancel"],
}

#: (status, action) -> status after; every pair not listed is a 409
ALLOWED = {
    ("pending", "start"): "running",
    ("pending", "complete"): "completed",
    ("pending", "fail"): "failed",
    ("pending", "cancel"): "cancelled",
    ("running", "pause"): "paused",
    ("running", "complete"): "completed",
    ("running", "fail"): "failed",
    ("running", "cancel"): "cancelled",
    ("paused", "resume"): "running",
    ("paused", "complete"): "completed",
    ("paused", "fail"): "failed",
    ("paused", "cancel"): "cancelled",
}
EVENT = {
    "start": "experiment.started",
    "pause": "experiment.paused",
    "resume": "experiment.resumed",
    "complete": "experiment.completed",
    "fail": "experiment.failed",
    "cancel": "experiment.cancelled",
}


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value)


@pytest.mark.slow
async def test_lifecycle_table(client, db, alice, subtests) -> None:
    """Each of the 36 (status, action) pairs on its own experiment: allowed ones move the status
    and publish their event with the new version; all others are a 409 that changes nothing."""
    for status in STATUSES:
        for action in ACTIONS:
            with subtests.test(status=status, action=action):
                await check_transition(client, db, alice, status, action)


async def check_transition(client, db, alice, status: str, action: str) -> None:
    experiment = await new_experiment(client, alice)
    for step in REACH[status]:
        assert (await act(client, alice, experiment["id"], step)).status_code == 200
    before = await outbox(db)

    response = await act(client, alice, experiment["id"], action)

    if (status, action) in ALLOWED:
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["status"] == ALLOWED[status, action]
        events = await outbox(db)
        assert len(events) == len(before) + 1
        assert events[-1]["type"] == EVENT[action]
        assert events[-1]["subject"] == experiment["id"]
        assert events[-1]["data"]["status"] == ALLOWED[status, action]
        assert events[-1]["sequence"] == str(body["version"])
    else:
        assert response.status_code == 409, response.text
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert problem["current_status"] == status
        assert action not in problem["allowed_actions"]
        assert await outbox(db) == before
        current = await client.get(f"/api/v1/experiments/{experiment['id']}", headers=alice.headers)
        assert current.json()["status"] == status


def test_the_table_covers_every_pair_and_twelve_are_allowed() -> None:
    assert len(ALLOWED) == 12
    assert {s for s, _a in ALLOWED} == {"pending", "running", "paused"}


async def test_timestamps_and_duration_follow_the_lifecycle(client, alice) -> None:
    experiment = await new_experiment(client, alice)
    assert experiment["started_at"] is None and experiment["ended_at"] is None

    started = (await act(client, alice, experiment["id"], "start")).json()
    paused = (await act(client, alice, experiment["id"], "pause")).json()
    resumed = (await act(client, alice, experiment["id"], "resume")).json()
    done = (await act(client, alice, experiment["id"], "complete")).json()

    assert started["started_at"] is not None
    assert (
        paused["started_at"] == resumed["started_at"] == done["started_at"] == started["started_at"]
    )
    assert paused["ended_at"] is None and resumed["ended_at"] is None
    assert ts(done["ended_at"]) >= ts(done["started_at"])
    elapsed = (ts(done["ended_at"]) - ts(done["started_at"])).total_seconds()
    assert done["duration_seconds"] == pytest.approx(elapsed, abs=1e-6)
    assert [done["version"], resumed["version"], paused["version"]] == [5, 4, 3]


async def test_completing_a_pending_experiment_counts_from_its_creation(client, alice) -> None:
    experiment = await new_experiment(client, alice)
    done = (
        await act(
            client,
            alice,
            experiment["id"],
            "complete",
            final_metrics={"val_accuracy": 0.94},
            best_epoch=8,
            total_epochs=10,
        )
    ).json()
    assert done["status"] == "completed"
    assert done["started_at"] == experiment["created_at"]
    assert done["metrics"] == {"val_accuracy": 0.94}
    assert (done["best_epoch"], done["total_epochs"]) == (8, 10)


async def test_cancelling_a_pending_experiment_has_no_duration(client, db, alice) -> None:
    experiment = await new_experiment(client, alice)
    cancelled = (
        await act(client, alice, experiment["id"], "cancel", reason="wrong dataset")
    ).json()
    assert cancelled["started_at"] is None and cancelled["ended_at"] is not None
    assert cancelled["duration_seconds"] is None
    event = (await outbox(db))[-1]
    assert event["type"] == "experiment.cancelled"
    assert event["data"]["reason"] == "wrong dataset"


async def test_terminal_events_carry_what_a_notification_needs(client, db, settings, alice) -> None:
    # the read model knows the owner (from user.registered) ...
    from runyard.shared.db import create_engine, create_sessionmaker

    engine = create_engine(settings.database_url, pool_size=1)
    async with create_sessionmaker(engine, schema="experiments")() as session, session.begin():
        await users.apply_user_snapshot(
            session,
            user_id=alice.id,
            username="ada",
            email="ada@pumplab.example",
            full_name="Ada Lindqvist",
            role="user",
            is_active=True,
            sequence=1,
        )
    await engine.dispose()
    dataset = (
        await client.post("/api/v1/datasets", json={"name": "cwru-12k"}, headers=alice.headers)
    ).json()
    # ... and the experiment trains, then fails
    experiment = await new_experiment(
        client, alice, name="cnn1d-lr3e-4", model_type="cnn1d", dataset_id=dataset["id"]
    )
    runs = [{"epoch": e, "val_loss": 1 / (e + 1), "val_accuracy": 0.5 + e / 10} for e in range(4)]
    logged = await client.post(
        f"/api/v1/experiments/{experiment['id']}/runs", json={"runs": runs}, headers=alice.headers
    )
    assert logged.status_code == 201
    failed = await act(
        client,
        alice,
        experiment["id"],
        "fail",
        error="CUDA out of memory",
        final_metrics={"f1": 0.7},
    )
    assert failed.status_code == 200

    event: dict[str, Any] = (await outbox(db))[-1]
    assert event["type"] == "experiment.failed"
    assert event["subject"] == experiment["id"]
    data = event["data"]
    assert data["name"] == "cnn1d-lr3e-4"
    assert (data["owner_id"], data["owner_username"], data["owner_email"]) == (
        str(alice.id),
        "ada",
        "ada@pumplab.example",
    )
    assert data["owner_full_name"] == "Ada Lindqvist"
    assert (data["model_type"], data["dataset_id"], data["dataset_name"]) == (
        "cnn1d",
        dataset["id"],
        "cwru-12k",
    )
    assert data["final_metrics"] == {
        "val_loss": 0.25,
        "val_accuracy": pytest.approx(0.8),
        "f1": 0.7,
    }
    assert (data["best_epoch"], data["total_epochs"]) == (3, 4)
    assert data["duration_seconds"] > 0
    assert data["error"] == "CUDA out of memory"
    assert await event_types(db) == [
        "dataset.created",
        "experiment.created",
        "experiment.started",
        "experiment.epochs_logged",
        "experiment.failed",
    ]
