"""The S3 store against a real S3-compatible server (moto's, started by the tests): the same
API, multipart staging of large files, ranges, content stored once and removed with its last
artifact."""

from __future__ import annotations

import hashlib
import os

import boto3

from services.experiments.tests.experiments_helpers import new_experiment


def objects(s3: dict) -> list[str]:
    client = boto3.client(
        "s3",
        endpoint_url=s3["artifact_s3_endpoint_url"],
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    listed = client.list_objects_v2(Bucket=s3["artifact_s3_bucket"])
    return sorted(o["Key"] for o in listed.get("Contents", []))


async def test_the_api_on_the_s3_store(app_with, s3_settings, alice) -> None:
    # parts of 5 MiB (S3's smallest): a 12 MiB file is a three-part upload
    content = os.urandom(12 * 1024 * 1024 + 123)
    digest = hashlib.sha256(content).hexdigest()
    async with app_with(**s3_settings, artifact_chunk_bytes=64 * 1024) as client:
        experiment = await new_experiment(client, alice)
        base = f"/api/v1/experiments/{experiment['id']}/artifacts"

        async def chunked():
            for start in range(0, len(content), 1_000_000):
                yield content[start : start + 1_000_000]

        put = await client.put(f"{base}/model.ckpt", content=chunked(), headers=alice.headers)
        assert put.status_code == 201, put.text
        assert (put.json()["sha256"], put.json()["size"]) == (digest, len(content))
        copy = await client.put(f"{base}/copy.ckpt", content=content, headers=alice.headers)
        assert copy.status_code == 201
        small = await client.put(f"{base}/empty.txt", content=b"", headers=alice.headers)
        assert (small.status_code, small.json()["size"]) == (201, 0)
        # one object per distinct content, nothing left staged
        empty_digest = hashlib.sha256(b"").hexdigest()
        assert objects(s3_settings) == sorted(
            f"runyard/blobs/{d[:2]}/{d[2:4]}/{d}" for d in (digest, empty_digest)
        )

        whole = await client.get(f"{base}/model.ckpt", headers=alice.headers)
        assert hashlib.sha256(whole.content).hexdigest() == digest
        ranged = await client.get(
            f"{base}/copy.ckpt", headers={**alice.headers, "Range": "bytes=5242870-5242889"}
        )
        assert ranged.status_code == 206
        assert ranged.content == content[5242870:5242890]
        assert (await client.get(f"{base}/empty.txt", headers=alice.headers)).content == b""

        await client.delete(f"{base}/model.ckpt", headers=alice.headers)
        assert len(objects(s3_settings)) == 2
        await client.delete(f"{base}/copy.ckpt", headers=alice.headers)
        await client.delete(f"{base}/empty.txt", headers=alice.headers)
        assert objects(s3_settings) == []


async def test_a_refused_s3_upload_leaves_nothing(app_with, s3_settings, alice) -> None:
    async with app_with(**s3_settings, artifact_max_bytes=6 * 1024 * 1024) as client:
        experiment = await new_experiment(client, alice)

        async def chunked():
            for _ in range(7):
                yield b"x" * (1024 * 1024)

        url = f"/api/v1/experiments/{experiment['id']}/artifacts/too-big"
        response = await client.put(url, content=chunked(), headers=alice.headers)
        assert response.status_code == 413
    assert objects(s3_settings) == []


async def test_staged_uploads_left_by_a_killed_process_are_swept(settings, s3_settings) -> None:
    from datetime import UTC, datetime, timedelta

    from runyard.experiments.artifacts.store import S3Store

    store = S3Store.from_settings(settings.model_copy(update=s3_settings))

    async def chunks():
        yield b"kept"

    kept = await store.stage(chunks(), max_bytes=100)
    await store.commit(kept)
    # what a process killed mid-upload leaves: an unfinished multipart upload, a staged object
    bucket = s3_settings["artifact_s3_bucket"]
    store.client.create_multipart_upload(Bucket=bucket, Key="runyard/tmp/unfinished")
    store.client.put_object(Bucket=bucket, Key="runyard/tmp/uncommitted", Body=b"x")

    # a recent staged object stays (moto dates every multipart upload 2010: not checked here)
    early = await store.sweep_staged(datetime.now(UTC) - timedelta(hours=1))
    assert "runyard/tmp/uncommitted" in objects(s3_settings)
    assert early + await store.sweep_staged(datetime.now(UTC) + timedelta(minutes=1)) == 2
    assert store.client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    d = kept.sha256
    assert objects(s3_settings) == [f"runyard/blobs/{d[:2]}/{d[2:4]}/{d}"]
