"""``experiment.epochs_logged`` per experiment and window: the requests of a window add up to one
event, a lifecycle change or a delete writes the pending event first, and a row younger than
the window waits."""

from __future__ import annotations

import json

from services.experiments.tests.experiments_helpers import (
    act,
    fetch,
    new_experiment,
    write_epoch_events,
)

ENDED = {
    "pause": "experiment.paused",
    "complete": "experiment.completed",
    "fail": "experiment.failed",
    "cancel": "experiment.cancelled",
    "delete": "experiment.deleted",
}


async def log(client, who, experiment: dict, runs: list[dict]) -> None:
    response = await client.post(
        f"/api/v1/experiments/{experiment['id']}/runs", json={"runs": runs}, headers=who.headers
    )
    assert response.status_code in (200, 201), response.text


async def written(db) -> list[dict]:
    """The outbox as it is (nothing pending written first)."""
    rows = await fetch(db, "SELECT payload FROM experiments.outbox ORDER BY id")
    return [json.loads(r["payload"]) for r in rows]


async def test_the_requests_of_a_window_become_one_event(client, db, alice) -> None:
    experiment = await new_experiment(client, alice)
    await log(client, alice, experiment, [{"epoch": 2, "val_loss": 0.5}])
    await log(client, alice, experiment, [{"epoch": 0, "val_loss": 0.9}])
    await log(client, alice, experiment, [{"epoch": 3, "val_loss": 0.4, "metrics": {"f1": 0.7}}])
    await log(client, alice, experiment, [{"epoch": 2, "val_loss": 0.45}])  # rewritten
    assert "experiment.epochs_logged" not in [e["type"] for e in await written(db)]

    assert await write_epoch_events(db) == 1
    assert await write_epoch_events(db) == 0
    [event] = [e for e in await written(db) if e["type"] == "experiment.epochs_logged"]
    data = event["data"]
    assert (data["first_epoch"], data["last_epoch"]) == (0, 3)
    assert (data["epochs_written"], data["epochs_inserted"], data["total_epochs"]) == (4, 3, 3)
    assert data["latest_metrics"] == {"val_loss": 0.4, "f1": 0.7}
    assert (data["best_epoch"], data["best_value"]) == (3, 0.4)


async def test_a_lifecycle_change_or_delete_writes_the_pending_event_first(
    client, db, alice
) -> None:
    for action in ("pause", "complete", "fail", "cancel", "delete"):
        experiment = await new_experiment(client, alice)
        await log(client, alice, experiment, [{"epoch": 0, "val_loss": 0.5}])
        if action == "delete":
            url = f"/api/v1/experiments/{experiment['id']}"
            assert (await client.delete(url, headers=alice.headers)).status_code == 204
        else:
            body = {"error": "oom"} if action == "fail" else {}
            response = await act(client, alice, experiment["id"], action, **body)
            assert response.status_code == 200, response.text
        types = [e["type"] for e in await written(db) if e["subject"] == experiment["id"]]
        assert types[-2:] == ["experiment.epochs_logged", ENDED[action]], types
        assert types.count("experiment.epochs_logged") == 1


async def test_a_pending_event_younger_than_the_window_waits(client, db, alice) -> None:
    from runyard.experiments.tracking.service import epoch_events
    from runyard.shared.db import create_engine, create_sessionmaker

    experiment = await new_experiment(client, alice)
    await log(client, alice, experiment, [{"epoch": 0, "val_loss": 0.5}])
    engine = create_engine(db.url, pool_size=1)
    try:
        sessionmaker = create_sessionmaker(engine, schema="experiments")
        async with sessionmaker() as session, session.begin():
            assert await epoch_events.write_due(session, window_s=60) == 0
    finally:
        await engine.dispose()
    assert await write_epoch_events(db) == 1
