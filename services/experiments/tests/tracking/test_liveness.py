"""Heartbeats and stalled runs: a running experiment that stops reporting is flagged once and
announced (``experiment.stalled``); reporting again announces ``experiment.resumed``.

The stall watcher runs here with a ``now`` that the test picks (a clock is the one thing tests
may fake); one test runs it as the service's worker, with a short limit, on a real clock.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from runyard.experiments.main import create_app
from runyard.experiments.tracking.service import liveness
from runyard.shared.db import create_engine, create_sessionmaker, utcnow
from runyard.shared.testing import running_app
from services.experiments.tests.experiments_helpers import (
    act,
    fetch,
    new_experiment,
    outbox,
)

MINUTE = timedelta(minutes=1)


@pytest.fixture
async def sessions(settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(settings.database_url, pool_size=2)
    yield create_sessionmaker(engine, schema="experiments")
    await engine.dispose()


async def watch(sessions, *, at: datetime, default_after_s: float = 600.0) -> int:
    """One pass of the stall watcher, as the worker runs it, at the moment ``at``."""
    async with sessions() as session, session.begin():
        return await liveness.mark_stalled(session, now=at, default_after_s=default_after_s)


async def running(client: Any, who: Any, **fields: Any) -> dict[str, Any]:
    experiment = await new_experiment(client, who, **fields)
    started = await act(client, who, experiment["id"], "start")
    assert started.status_code == 200, started.text
    body: dict[str, Any] = started.json()
    return body


async def read(client: Any, who: Any, experiment_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/v1/experiments/{experiment_id}", headers=who.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def beat(client: Any, who: Any, experiment_id: str) -> Any:
    return await client.post(f"/api/v1/experiments/{experiment_id}/heartbeat", headers=who.headers)


def moment(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def types_after(db, count: int) -> list[str]:
    return [event["type"] for event in (await outbox(db))[count:]]


# --- the heartbeat ----------------------------------------------------------------------------


async def test_a_heartbeat_records_the_moment_and_nothing_else(client, db, alice) -> None:
    experiment = await running(client, alice)
    before = len(await outbox(db))

    response = await beat(client, alice, experiment["id"])

    assert response.status_code == 204 and response.content == b""
    after = await read(client, alice, experiment["id"])
    assert moment(after["last_seen_at"]) > moment(experiment["last_seen_at"])
    # no new version, no updated_at, no event: a heartbeat every 30 s per run stays cheap
    assert (after["version"], after["updated_at"]) == (
        experiment["version"],
        experiment["updated_at"],
    )
    assert await types_after(db, before) == []


async def test_another_users_or_a_missing_experiment_is_404_and_a_viewer_403(
    client, db, alice, bob, viewer
) -> None:
    experiment = await running(client, alice)

    assert (await beat(client, bob, experiment["id"])).status_code == 404
    assert (await beat(client, alice, str(uuid.uuid4()))).status_code == 404
    refused = await beat(client, viewer, experiment["id"])
    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/problem+json"
    assert (await read(client, alice, experiment["id"]))["last_seen_at"] == experiment[
        "last_seen_at"
    ]


async def test_a_finished_experiment_answers_204_and_takes_nothing(client, db, alice) -> None:
    experiment = await running(client, alice)
    done = (await act(client, alice, experiment["id"], "complete")).json()

    assert (await beat(client, alice, experiment["id"])).status_code == 204
    assert await read(client, alice, experiment["id"]) == done


async def test_an_admin_may_beat_for_anyone(client, alice, admin) -> None:
    experiment = await running(client, alice)
    assert (await beat(client, admin, experiment["id"])).status_code == 204
    seen = (await read(client, alice, experiment["id"]))["last_seen_at"]
    assert moment(seen) > moment(experiment["last_seen_at"])


# --- stalling ----------------------------------------------------------------------------------


async def test_a_silent_running_experiment_is_stalled_once_with_an_event(
    client, db, sessions, alice
) -> None:
    experiment = await running(client, alice, name="cnn1d silent", model_type="cnn1d")
    logged = await client.post(
        f"/api/v1/experiments/{experiment['id']}/runs",
        json={"epoch": 1, "val_loss": 0.5},
        headers=alice.headers,
    )
    assert logged.status_code == 201
    seen = (await read(client, alice, experiment["id"]))["last_seen_at"]
    before = len(await outbox(db))

    assert await watch(sessions, at=utcnow() + 9 * MINUTE) == 0  # within the 10 minutes
    assert await watch(sessions, at=utcnow() + 11 * MINUTE) == 1
    assert await watch(sessions, at=utcnow() + 60 * MINUTE) == 0  # once, however long

    stalled = await read(client, alice, experiment["id"])
    assert stalled["status"] == "running" and stalled["stalled_at"] is not None
    assert stalled["version"] == experiment["version"] + 1
    events = (await outbox(db))[before:]
    assert [e["type"] for e in events] == ["experiment.stalled"]
    event = events[0]
    assert (event["subject"], event["sequence"]) == (experiment["id"], str(stalled["version"]))
    data = event["data"]
    assert (data["name"], data["model_type"], data["status"]) == (
        "cnn1d silent",
        "cnn1d",
        "running",
    )
    assert (data["owner_id"], data["total_epochs"]) == (str(alice.id), 1)
    assert data["latest_metrics"] == {"val_loss": 0.5}
    assert data["stale_after_s"] == 600.0
    assert datetime.fromisoformat(data["last_seen_at"]) == datetime.fromisoformat(seen)
    assert datetime.fromisoformat(data["stalled_at"]) == datetime.fromisoformat(
        stalled["stalled_at"]
    )


async def test_pending_paused_and_finished_experiments_are_never_stalled(
    client, db, sessions, alice
) -> None:
    await new_experiment(client, alice)
    paused = await running(client, alice)
    await act(client, alice, paused["id"], "pause")
    done = await running(client, alice)
    await act(client, alice, done["id"], "fail")
    before = len(await outbox(db))

    assert await watch(sessions, at=utcnow() + 24 * 60 * MINUTE) == 0
    assert await types_after(db, before) == []


async def test_the_experiments_own_limit_wins_over_the_default(client, sessions, alice) -> None:
    patient = await running(client, alice, stale_after_s=3600)
    hasty = await running(client, alice)
    quick = await running(client, alice)
    patched = await client.patch(
        f"/api/v1/experiments/{quick['id']}", json={"stale_after_s": 60}, headers=alice.headers
    )
    assert patched.status_code == 200 and patched.json()["stale_after_s"] == 60

    assert await watch(sessions, at=utcnow() + 2 * MINUTE) == 1
    assert (await read(client, alice, quick["id"]))["stalled_at"] is not None
    assert await watch(sessions, at=utcnow() + 30 * MINUTE) == 1
    assert (await read(client, alice, hasty["id"]))["stalled_at"] is not None
    assert (await read(client, alice, patient["id"]))["stalled_at"] is None
    assert await watch(sessions, at=utcnow() + 61 * MINUTE) == 1
    assert (await read(client, alice, patient["id"]))["stalled_at"] is not None


@pytest.mark.parametrize(
    "value", [0, -5, 59, 30 * 24 * 3600 + 1, 10**12, "600", True, 600.5, [600], {"s": 600}]
)
async def test_a_nonsensical_limit_is_422_and_changes_nothing(client, db, alice, value) -> None:
    created = await client.post(
        "/api/v1/experiments",
        json={"name": "bad limit", "stale_after_s": value},
        headers=alice.headers,
    )
    assert created.status_code == 422, created.text
    assert created.headers["content-type"] == "application/problem+json"
    experiment = await running(client, alice, stale_after_s=900)
    before = len(await outbox(db))
    patched = await client.patch(
        f"/api/v1/experiments/{experiment['id']}",
        json={"stale_after_s": value},
        headers=alice.headers,
    )
    assert patched.status_code == 422, patched.text
    assert await read(client, alice, experiment["id"]) == experiment
    assert await types_after(db, before) == []


async def test_a_null_limit_goes_back_to_the_default(client, alice) -> None:
    experiment = await running(client, alice, stale_after_s=900)
    patched = await client.patch(
        f"/api/v1/experiments/{experiment['id']}",
        json={"stale_after_s": None},
        headers=alice.headers,
    )
    assert patched.status_code == 200 and patched.json()["stale_after_s"] is None


# --- reporting again ---------------------------------------------------------------------------


@pytest.mark.parametrize("sign", ["heartbeat", "epoch"])
async def test_a_stalled_run_that_reports_again_is_resumed_with_an_event(
    client, db, sessions, alice, sign
) -> None:
    experiment = await running(client, alice)
    await watch(sessions, at=utcnow() + 11 * MINUTE)
    stalled = await read(client, alice, experiment["id"])
    before = len(await outbox(db))

    if sign == "heartbeat":
        assert (await beat(client, alice, experiment["id"])).status_code == 204
    else:
        logged = await client.post(
            f"/api/v1/experiments/{experiment['id']}/runs",
            json={"epoch": 1, "val_loss": 0.4},
            headers=alice.headers,
        )
        assert logged.status_code == 201

    back = await read(client, alice, experiment["id"])
    assert (back["status"], back["stalled_at"]) == ("running", None)
    assert back["version"] == stalled["version"] + 1
    assert moment(back["last_seen_at"]) > moment(stalled["last_seen_at"])
    events = (await outbox(db))[before:]
    expected = ["experiment.resumed"] + (["experiment.epochs_logged"] if sign == "epoch" else [])
    assert [e["type"] for e in events] == expected
    resumed = events[0]
    assert resumed["sequence"] == str(back["version"])
    assert resumed["data"]["status"] == "running"
    assert datetime.fromisoformat(resumed["data"]["stalled_at"]) == datetime.fromisoformat(
        stalled["stalled_at"]
    )
    # the next heartbeat is an ordinary one again
    assert (await beat(client, alice, experiment["id"])).status_code == 204
    assert await types_after(db, before) == expected


async def test_a_resume_from_pause_carries_no_stall(client, db, alice) -> None:
    experiment = await running(client, alice)
    await act(client, alice, experiment["id"], "pause")
    await act(client, alice, experiment["id"], "resume")
    event = (await outbox(db))[-1]
    assert (event["type"], event["data"]["stalled_at"]) == ("experiment.resumed", None)


@pytest.mark.parametrize("action", ["pause", "complete", "fail", "cancel"])
async def test_a_transition_ends_a_stall_and_tells_only_its_own_event(
    client, db, sessions, alice, action
) -> None:
    experiment = await running(client, alice)
    await watch(sessions, at=utcnow() + 11 * MINUTE)
    before = len(await outbox(db))

    moved = await act(client, alice, experiment["id"], action)

    assert moved.status_code == 200 and moved.json()["stalled_at"] is None
    assert await types_after(db, before) == [f"experiment.{moved.json()['status']}"]


async def test_a_resumed_experiment_gets_a_full_limit_again(client, db, sessions, alice) -> None:
    experiment = await running(client, alice)
    await act(client, alice, experiment["id"], "pause")
    # paused for two hours, silent all along
    await fetch(
        db,
        "UPDATE experiments.experiments SET started_at = started_at - interval '2 hours', "
        "last_seen_at = last_seen_at - interval '2 hours' WHERE id = $1",
        uuid.UUID(experiment["id"]),
    )
    assert (await act(client, alice, experiment["id"], "resume")).status_code == 200

    assert await watch(sessions, at=utcnow() + 5 * MINUTE) == 0
    assert await watch(sessions, at=utcnow() + 11 * MINUTE) == 1


# --- finding them ------------------------------------------------------------------------------


async def test_the_filter_language_finds_stalled_runs(client, sessions, alice) -> None:
    stalled = await running(client, alice)
    await watch(sessions, at=utcnow() + 11 * MINUTE)
    fine = await running(client, alice)

    found = await client.get(
        "/api/v1/experiments",
        params={"filter": "status = 'running' and stalled_at is not null"},
        headers=alice.headers,
    )
    assert found.status_code == 200, found.text
    assert [e["id"] for e in found.json()["items"]] == [stalled["id"]]
    alive = await client.get(
        "/api/v1/experiments", params={"filter": "stalled_at is null"}, headers=alice.headers
    )
    assert [e["id"] for e in alive.json()["items"]] == [fine["id"]]


async def test_a_row_another_transaction_holds_is_skipped_not_waited_for(
    client, sessions, alice
) -> None:
    """Replicas: a watcher never blocks on (or doubles) a row another one is marking."""
    experiment = await running(client, alice)
    async with sessions() as holder, holder.begin():
        await holder.execute(
            text("SELECT 1 FROM experiments WHERE id = :id FOR UPDATE"),
            {"id": uuid.UUID(experiment["id"])},
        )
        async with sessions() as session, session.begin():
            await session.execute(text("SET LOCAL lock_timeout = '2s'"))
            assert (
                await liveness.mark_stalled(
                    session, now=utcnow() + 11 * MINUTE, default_after_s=600.0
                )
                == 0
            )
    assert await watch(sessions, at=utcnow() + 11 * MINUTE) == 1


async def test_the_service_worker_marks_a_silent_run(settings, db, alice) -> None:
    quick = settings.model_copy(
        update={"run_workers": True, "stale_after_s": 0.5, "stall_poll_interval_s": 0.1}
    )
    async with running_app(create_app(quick)) as client:
        experiment = await running(client, alice)
        for _ in range(200):
            if (await read(client, alice, experiment["id"]))["stalled_at"]:
                break
            await asyncio.sleep(0.05)
        assert (await read(client, alice, experiment["id"]))["stalled_at"] is not None
    stalled = [e for e in await outbox(db) if e["type"] == "experiment.stalled"]
    assert [e["subject"] for e in stalled] == [experiment["id"]]
    assert stalled[0]["data"]["stale_after_s"] == 0.5


async def test_the_upgrade_gives_running_experiments_a_full_limit(client, db, sessions, alice):
    """Runs that started before heartbeats existed are not stalled by the upgrade itself."""
    from alembic import command

    from runyard.shared.migrations import alembic_config

    experiment = await running(client, alice)
    pending = await new_experiment(client, alice)
    config = alembic_config("runyard.experiments", db.url)
    await asyncio.to_thread(command.downgrade, config, "0004")
    await fetch(db, "UPDATE experiments.experiments SET started_at = now() - interval '1 day'")
    await asyncio.to_thread(command.upgrade, config, "head")

    rows = await fetch(db, "SELECT id, last_seen_at, now() AS now FROM experiments.experiments")
    seen = {str(r["id"]): r["last_seen_at"] for r in rows}
    assert seen[pending["id"]] is None
    assert rows[0]["now"] - seen[experiment["id"]] < MINUTE
    assert await watch(sessions, at=utcnow() + 5 * MINUTE) == 0
    assert await watch(sessions, at=utcnow() + 11 * MINUTE) == 1
