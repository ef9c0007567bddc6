"""A signal's stored samples downsampled for a chart (``GET .../signals/{id}/samples``): read
from the files a generation wrote or an import read, never from a path a caller set."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest

from runyard.experiments.jobs import runner as job_runner
from runyard.shared.db import create_engine, create_sessionmaker
from services.experiments.tests.jobs.job_helpers import csv_text, generate, job, tone, upload


@pytest.fixture
async def worker(settings) -> AsyncIterator[job_runner.Worker]:
    engine = create_engine(settings.database_url, pool_size=2)
    yield job_runner.Worker(create_sessionmaker(engine, schema="experiments"), settings, "w")
    await engine.dispose()


async def run_all(worker: job_runner.Worker) -> None:
    while await job_runner.run_next(worker):
        pass


def samples_url(dataset_id: str, signal_id: str) -> str:
    return f"/api/v1/datasets/{dataset_id}/signals/{signal_id}/samples"


async def test_a_generated_signal_reads_as_min_max_buckets(client, alice, bob, worker) -> None:
    created = await generate(
        client, alice, fault_classes=["normal"], severities=["mild"], duration_s=0.5
    )
    await run_all(worker)
    done = await job(client, alice, "dataset-generations", created["id"])
    assert done["status"] == "completed"
    dataset = done["dataset_id"]
    url = samples_url(dataset, "sig-000001")

    full = await client.get(url, params={"buckets": 10_000}, headers=alice.headers)
    assert full.status_code == 200, full.text
    body = full.json()
    assert body["num_samples"] == 5120 and body["sample_rate_hz"] == 10_240.0
    assert (body["from_index"], body["to_index"]) == (0, 5119)
    assert body["index"] == list(range(5120)) and body["min"] == body["max"]
    samples = np.array(body["min"])

    coarse = (await client.get(url, params={"buckets": 100}, headers=alice.headers)).json()
    assert len(coarse["index"]) == 100 and coarse["index"][0] == 0
    edges = [*coarse["index"], 5120]
    for i in range(100):
        part = samples[edges[i] : edges[i + 1]]
        assert coarse["min"][i] == pytest.approx(part.min())
        assert coarse["max"][i] == pytest.approx(part.max())

    zoomed = await client.get(
        url, params={"buckets": 1000, "from_index": 100, "to_index": 199}, headers=alice.headers
    )
    assert zoomed.json()["index"] == list(range(100, 200))
    assert zoomed.json()["min"] == pytest.approx(list(samples[100:200]))
    past = await client.get(url, params={"from_index": 9000}, headers=alice.headers)
    assert past.json()["index"] == [] and past.json()["from_index"] is None
    backwards = await client.get(
        url, params={"from_index": 10, "to_index": 5}, headers=alice.headers
    )
    assert backwards.status_code == 400

    assert (await client.get(url, headers=bob.headers)).status_code == 404
    missing = await client.get(samples_url(dataset, "sig-999999"), headers=alice.headers)
    assert missing.status_code == 404


async def test_an_imported_csv_signal_reads_back_its_samples(client, alice, worker) -> None:
    wave = tone(4.0, n=64, rate=64.0)
    content = csv_text([("a", "normal", wave), ("b", "imbalance", tone(8.0))]).encode()
    created = await upload(client, alice, "recording.csv", content)
    assert created.status_code == 202, created.text
    await run_all(worker)
    done = await job(client, alice, "dataset-imports", created.json()["id"])
    assert done["status"] == "completed", done
    body = (await client.get(samples_url(done["dataset_id"], "a"), headers=alice.headers)).json()
    assert body["sample_rate_hz"] == 64.0 and body["num_samples"] == 64
    assert body["min"] == pytest.approx(wave)


async def test_a_path_a_caller_set_is_never_opened(client, alice, worker) -> None:
    """Signals added through the API name their files as they like: even a file of the
    caller's own generation is not read through another dataset."""
    await generate(client, alice, fault_classes=["normal"], severities=["mild"], duration_s=0.1)
    await run_all(worker)
    made = (await client.get("/api/v1/dataset-generations", headers=alice.headers)).json()
    chunk_path: Any = made["items"][0]["output_path"] + "/chunk-000000-000001.npz#0"
    other = (
        await client.post("/api/v1/datasets", json={"name": "other"}, headers=alice.headers)
    ).json()
    signals = [
        {"signal_id": "borrowed", "file_path": chunk_path},
        {"signal_id": "outside", "file_path": "../../etc/passwd#1"},
        {"signal_id": "bare"},
    ]
    added = await client.post(
        f"/api/v1/datasets/{other['id']}/signals",
        json={"signals": signals},
        headers=alice.headers,
    )
    assert added.status_code == 201, added.text
    for signal in signals:
        answer = await client.get(
            samples_url(other["id"], signal["signal_id"]), headers=alice.headers
        )
        assert answer.status_code == 404
        assert "stored by Runyard" in answer.json()["detail"]
