"""Attacks on the job queue's resources: a job that kills every worker that claims it, a
generation sized to fill the disk, a user queueing jobs without end or storing files without
end. Each limit refuses with a 422 problem naming what was asked and the limit, and changes
nothing."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest

from runyard.experiments.jobs import runner as job_runner
from runyard.experiments.main import create_app
from runyard.shared.testing import running_app
from services.experiments.tests.experiments_helpers import fetch, outbox
from services.experiments.tests.jobs.job_helpers import (
    csv_text,
    generate,
    job,
    tone,
    upload,
    upload_area,
)


async def expire_lease(db, job_id: uuid.UUID) -> None:
    """What a worker's death looks like to the others: the lease runs out, never renewed."""
    await fetch(
        db,
        "UPDATE experiments.dataset_generations SET locked_until = now() - interval '1 s' "
        "WHERE id = $1",
        job_id,
    )


@pytest.mark.slow
async def test_a_job_that_kills_every_worker_it_meets_is_failed_after_the_allowed_attempts(
    client, db, alice, settings, make_worker
) -> None:
    small_steps = settings.model_copy(update={"generation_chunk_size": 5})
    created = await generate(client, alice)
    job_id = uuid.UUID(created["id"])
    for attempt in range(1, settings.job_max_attempts + 1):
        worker = make_worker(f"worker-{attempt}", small_steps)
        assert await job_runner.claim(worker, job_runner.DatasetGeneration) == job_id
        assert await job_runner.step(worker, job_runner.DatasetGeneration, job_id) is True
        await expire_lease(db, job_id)  # ... and the worker is killed mid-job

    survivor = make_worker("worker-last", small_steps)
    assert await job_runner.claim(survivor, job_runner.DatasetGeneration) is None
    assert await job_runner.run_next(survivor) is False

    done = await job(client, alice, "dataset-generations", created["id"])
    assert (done["status"], done["attempts"], done["dataset_id"]) == (
        "failed",
        settings.job_max_attempts,
        None,
    )
    assert f"started {settings.job_max_attempts} times" in done["error_message"]
    assert "EXPERIMENTS_JOB_MAX_ATTEMPTS" in done["error_message"]
    assert not (Path(settings.data_dir) / created["output_path"]).exists()
    failed = [e for e in await outbox(db) if e["type"] == "dataset_generation.failed"]
    assert [e["data"]["error"] for e in failed] == [done["error_message"]]


async def test_a_job_resumed_within_its_attempts_still_completes(
    client, db, alice, settings, make_worker
) -> None:
    created = await generate(client, alice)
    job_id = uuid.UUID(created["id"])
    for attempt in range(1, settings.job_max_attempts):
        worker = make_worker(f"worker-{attempt}")
        assert await job_runner.claim(worker, job_runner.DatasetGeneration) == job_id
        await expire_lease(db, job_id)
    assert await job_runner.run_next(make_worker("worker-last")) is True
    done = await job(client, alice, "dataset-generations", created["id"])
    assert (done["status"], done["attempts"]) == ("completed", settings.job_max_attempts)


async def test_a_generation_is_limited_by_signals_times_samples_not_each_alone(
    client, db, alice, settings
) -> None:
    # 13 x 3000 = 39,000 signals (under 100,000) of 1,000,000 samples (the most per signal)
    body = {
        "name": "disk-filler",
        "signals_per_combination": 3000,
        "sample_rate_hz": 100_000,
        "duration_s": 10,
    }
    response = await client.post("/api/v1/dataset-generations", json=body, headers=alice.headers)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert (problem["requested"], problem["limit"]) == (
        39_000_000_000,
        settings.generation_max_samples,
    )
    assert "39000000000 samples" in problem["detail"]
    assert str(settings.generation_max_samples) in problem["detail"]
    assert await fetch(db, "SELECT id FROM experiments.dataset_generations") == []


async def test_a_user_cannot_queue_more_jobs_than_the_active_limit(
    settings, db, alice, bob
) -> None:
    limited = settings.model_copy(update={"user_max_active_jobs": 2})
    async with running_app(create_app(limited)) as client:
        first = await generate(client, alice, name="one")
        await generate(client, alice, name="two")
        third = await client.post(
            "/api/v1/dataset-generations", json={"name": "three"}, headers=alice.headers
        )
        assert third.status_code == 422
        assert (third.json()["requested"], third.json()["limit"]) == (3, 2)
        assert "2 pending or running" in third.json()["detail"]
        imported = await upload(
            client, alice, "a.csv", csv_text([("a", "normal", tone(4))]).encode()
        )
        assert imported.status_code == 422  # imports and generations count together
        await generate(client, bob, name="bobs")  # a limit per user
        await client.post(
            f"/api/v1/dataset-generations/{first['id']}/cancel", headers=alice.headers
        )
        await generate(client, alice, name="three")
    rows = await fetch(
        db, "SELECT name FROM experiments.dataset_generations WHERE owner_id = $1", alice.id
    )
    assert sorted(r["name"] for r in rows) == ["one", "three", "two"]
    assert await fetch(db, "SELECT id FROM experiments.dataset_imports") == []


async def test_requests_racing_past_the_active_limit_are_counted_one_at_a_time(
    settings, db, alice
) -> None:
    limited = settings.model_copy(update={"user_max_active_jobs": 2})
    async with running_app(create_app(limited)) as client:
        responses = await asyncio.gather(
            *(
                client.post(
                    "/api/v1/dataset-generations", json={"name": f"race-{i}"}, headers=alice.headers
                )
                for i in range(6)
            )
        )
    assert sorted(r.status_code for r in responses) == [202, 202, 422, 422, 422, 422]
    assert len(await fetch(db, "SELECT id FROM experiments.dataset_generations")) == 2


async def test_a_user_cannot_store_more_than_their_quota_and_deleting_frees_it(
    settings, db, alice, make_worker
) -> None:
    content = csv_text([(f"s{i}", "normal", tone(4)) for i in range(80)]).encode()
    quota = len(content) + len(content) // 2  # room for one upload, not two
    limited = settings.model_copy(update={"user_quota_bytes": quota})
    async with running_app(create_app(limited)) as client:
        first = await upload(client, alice, "a.csv", content)
        assert first.status_code == 202, first.text
        await job_runner.run_next(make_worker(config=limited))
        done = await job(client, alice, "dataset-imports", first.json()["id"])
        assert done["status"] == "completed"

        second = await upload(client, alice, "b.csv", content, name="second")
        assert second.status_code == 422
        problem: dict[str, Any] = second.json()
        assert (problem["requested"], problem["limit"]) == (2 * len(content), quota)
        assert f"needs {len(content)} bytes" in problem["detail"]
        assert [p.name for p in upload_area(limited, alice).iterdir()] == [done["id"]]
        generation = await client.post(
            "/api/v1/dataset-generations", json={"name": "gen"}, headers=alice.headers
        )
        assert generation.status_code == 422  # generated files count too

        # deleting the dataset removes the files behind it, not only the rows
        deleted = await client.delete(
            f"/api/v1/datasets/{done['dataset_id']}", headers=alice.headers
        )
        assert deleted.status_code == 204
        assert not (Path(limited.data_dir) / done["output_path"]).exists()
        again = await upload(client, alice, "b.csv", content, name="second")
        assert again.status_code == 202, again.text
    assert len(await fetch(db, "SELECT id FROM experiments.dataset_imports")) == 2
