"""Blobs and races: a content's bytes stay while any artifact references it, also when uploads
and deletes of the same content interleave; blobs of deleted experiments are collected; and an
upload streams (memory stays bounded whatever the file's size)."""

from __future__ import annotations

import asyncio
import hashlib
import tracemalloc
from pathlib import Path

import pytest

from runyard.experiments.artifacts import service
from runyard.experiments.artifacts.store import LocalStore
from runyard.shared.db import create_engine, create_sessionmaker
from services.experiments.tests.experiments_helpers import fetch, new_experiment


def blob_files(settings) -> list[Path]:
    root = Path(settings.data_dir) / "artifacts" / "blobs"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


async def test_concurrent_uploads_and_deletes_of_one_content_never_lose_its_bytes(
    client, db, settings, alice
) -> None:
    experiment = await new_experiment(client, alice)
    base = f"/api/v1/experiments/{experiment['id']}/artifacts"
    content = b"shared content" * 1000
    for round_ in range(8):
        await client.put(f"{base}/keep-{round_}", content=content, headers=alice.headers)
        # the only reference goes while another upload of the same content comes in
        deleted, uploaded = await asyncio.gather(
            client.delete(f"{base}/keep-{round_}", headers=alice.headers),
            client.put(f"{base}/new-{round_}", content=content, headers=alice.headers),
        )
        assert (deleted.status_code, uploaded.status_code) == (204, 201)
        got = await client.get(f"{base}/new-{round_}", headers=alice.headers)
        assert got.content == content, round_
        await client.delete(f"{base}/new-{round_}", headers=alice.headers)
        assert blob_files(settings) == []


async def test_blobs_of_a_deleted_experiment_are_collected(client, db, settings, alice) -> None:
    experiment = await new_experiment(client, alice)
    other = await new_experiment(client, alice)
    base = "/api/v1/experiments/{}/artifacts/{}"
    await client.put(base.format(experiment["id"], "only"), content=b"1", headers=alice.headers)
    await client.put(base.format(experiment["id"], "shared"), content=b"2", headers=alice.headers)
    await client.put(base.format(other["id"], "shared"), content=b"2", headers=alice.headers)
    response = await client.delete(f"/api/v1/experiments/{experiment['id']}", headers=alice.headers)
    assert response.status_code == 204
    assert len(blob_files(settings)) == 2

    engine = create_engine(db.url, pool_size=2)
    try:
        sessions = create_sessionmaker(engine, schema="experiments")
        store = LocalStore(Path(settings.data_dir) / "artifacts", settings.artifact_chunk_bytes)
        assert await service.collect_unreferenced(sessions, store) == 1
        assert await service.collect_unreferenced(sessions, store) == 0
    finally:
        await engine.dispose()
    assert [p.name for p in blob_files(settings)] == [hashlib.sha256(b"2").hexdigest()]
    rows = await fetch(db, "SELECT sha256 FROM experiments.artifact_blobs")
    assert [r["sha256"] for r in rows] == [hashlib.sha256(b"2").hexdigest()]


@pytest.mark.slow
async def test_an_upload_streams_in_bounded_memory(app_with, settings, alice) -> None:
    size, piece = 64 * 1024 * 1024, b"\xab" * (256 * 1024)
    async with app_with(artifact_chunk_bytes=1024 * 1024) as client:
        experiment = await new_experiment(client, alice)
        url = f"/api/v1/experiments/{experiment['id']}/artifacts/big.bin"

        async def body():
            for _ in range(size // len(piece)):
                yield piece

        tracemalloc.start()
        try:
            response = await client.put(url, content=body(), headers=alice.headers)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert response.status_code == 201, response.text
        assert response.json()["size"] == size
    # a 64 MiB file through at most a few MiB of Python memory
    assert peak < 16 * 1024 * 1024, peak
    assert blob_files(settings)[0].stat().st_size == size


async def test_staged_copies_left_by_a_killed_upload_are_swept(tmp_path: Path) -> None:
    import os
    from datetime import UTC, datetime, timedelta

    store = LocalStore(tmp_path, 64 * 1024)

    async def chunks():
        yield b"kept"

    kept = await store.stage(chunks(), max_bytes=100)
    await store.commit(kept)
    # what a process killed mid-upload leaves: staged copies never committed nor discarded
    store.tmp.mkdir(parents=True, exist_ok=True)
    old, recent = store.tmp / "a", store.tmp / "b"
    old.write_bytes(b"half an upload")
    recent.write_bytes(b"an upload in flight")
    day_ago = datetime.now(UTC) - timedelta(days=1)
    os.utime(old, (day_ago.timestamp(), day_ago.timestamp()))

    assert await store.sweep_staged(datetime.now(UTC) - timedelta(hours=1)) == 1
    assert sorted(p.name for p in store.tmp.iterdir()) == ["b"]
    assert await store.exists(kept.sha256)  # committed blobs are not staged copies
    assert await LocalStore(tmp_path / "never-used", 1024).sweep_staged(datetime.now(UTC)) == 0
