"""``dataset_generation.progressed`` / ``dataset_import.progressed``: written by the job steps
with the progress they report (same transaction), at most one per job and interval unless the
progress moved far enough, one before the final transaction, none for a cancelled step."""

from __future__ import annotations

import uuid
from typing import Any

from runyard.experiments.jobs import runner as job_runner
from services.experiments.tests.experiments_helpers import fetch, outbox
from services.experiments.tests.jobs.job_helpers import csv_text, generate, job, tone, upload


async def progressed(db, kind: str = "dataset_generation") -> list[dict[str, Any]]:
    return [e["data"] for e in await outbox(db) if e["type"] == f"{kind}.progressed"]


async def test_each_step_writes_its_progress_and_its_event_together(
    client, db, alice, settings, make_worker
) -> None:
    small_steps = settings.model_copy(update={"generation_chunk_size": 5})
    created = await generate(client, alice, signals_per_combination=2)  # 26 signals, 6 steps
    job_id = uuid.UUID(created["id"])
    worker = make_worker("worker-a", small_steps)
    worker.progress_event_interval_s = 0  # an event at every step
    assert await job_runner.claim(worker, job_runner.DatasetGeneration) == job_id
    seen = []
    while await job_runner.step(worker, job_runner.DatasetGeneration, job_id):
        row = (
            await fetch(
                db,
                "SELECT progress, items_done FROM experiments.dataset_generations WHERE id = $1",
                job_id,
            )
        )[0]
        events = await progressed(db)
        # the step's event is in the outbox with the progress it stored: nothing in between
        assert (events[-1]["progress"], events[-1]["items_done"]) == (
            row["progress"],
            row["items_done"],
        )
        seen.append(events[-1])
    assert [e["items_done"] for e in seen] == [5, 10, 15, 20, 25, 26]
    assert [e["progress"] for e in seen] == [90 * n // 26 for n in (5, 10, 15, 20, 25, 26)]
    assert {e["items_total"] for e in seen} == {26}
    assert [e["stage"] for e in seen] == ["generating"] * 5 + ["storing"]
    first = seen[0]
    assert first["job_id"] == created["id"] and first["owner_id"] == str(alice.id)
    assert (first["status"], first["attempts"], first["name"]) == ("running", 1, "synthetic-pump")
    assert first["started_at"] is not None
    assert "owner_email" not in first  # not a notification: nothing personal
    types = [e["type"] for e in await outbox(db) if e["type"].startswith("dataset_generation.")]
    assert types == ["dataset_generation.progressed"] * 6 + ["dataset_generation.completed"]
    assert (await job(client, alice, "dataset-generations", created["id"]))["progress"] == 100


async def test_events_are_spaced_by_time_or_distance_and_the_last_step_always_has_one(
    client, db, alice, settings, make_worker
) -> None:
    small_steps = settings.model_copy(update={"generation_chunk_size": 5})
    await generate(client, alice, signals_per_combination=2)
    worker = make_worker("worker-a", small_steps)
    worker.progress_event_interval_s = 3600  # never by time in this test: by distance only
    worker.progress_event_step = 30
    assert await job_runner.run_next(worker) is True
    # steps at 17, 34, 51, 69, 86, 90 %: the first, each 30 points on, and the last step's
    assert [e["progress"] for e in await progressed(db)] == [17, 51, 86, 90]
    assert worker.progress_sent == {}  # forgotten with the job


async def test_a_step_that_finds_its_job_cancelled_writes_no_progress(
    client, db, alice, settings, make_worker
) -> None:
    small_steps = settings.model_copy(update={"generation_chunk_size": 5})
    created = await generate(client, alice, signals_per_combination=2)
    job_id = uuid.UUID(created["id"])
    worker = make_worker("worker-a", small_steps)
    worker.progress_event_interval_s = 0
    assert await job_runner.claim(worker, job_runner.DatasetGeneration) == job_id
    assert await job_runner.step(worker, job_runner.DatasetGeneration, job_id) is True
    response = await client.post(
        f"/api/v1/dataset-generations/{created['id']}/cancel", headers=alice.headers
    )
    assert response.status_code in (200, 202), response.text
    await job_runner.run(worker, job_runner.DatasetGeneration, job_id)
    assert [e["items_done"] for e in await progressed(db)] == [5]
    assert (await job(client, alice, "dataset-generations", created["id"]))["status"] == (
        "cancelled"
    )


async def test_an_import_reports_its_files_as_it_reads_them(client, db, alice, make_worker) -> None:
    content = csv_text([("a", "normal", tone(5.0)), ("b", "imbalance", tone(9.0))]).encode()
    response = await upload(client, alice, "one.csv", content, name="recordings")
    assert response.status_code == 202, response.text
    created = response.json()
    worker = make_worker()
    worker.progress_event_interval_s = 0
    assert await job_runner.run_next(worker) is True
    events = await progressed(db, "dataset_import")
    assert [(e["items_done"], e["items_total"], e["stage"]) for e in events] == [(1, 1, "storing")]
    assert events[0]["job_id"] == created["id"]
    assert [e["type"] for e in await outbox(db) if e["type"].startswith("dataset_import.")] == [
        "dataset_import.progressed",
        "dataset_import.completed",
    ]
