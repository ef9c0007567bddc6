"""Artifacts over the API: upload, list, download with ranges, delete; limits, quota, paths,
access rules, events, and content stored once. The local store (a directory) unless a test
says otherwise; the S3 store against a real S3-compatible server in test_s3_store.py."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from services.experiments.tests.experiments_helpers import (
    event_types,
    fetch,
    new_experiment,
    outbox,
)


def url(experiment: dict, path: str = "") -> str:
    base = f"/api/v1/experiments/{experiment['id']}/artifacts"
    return f"{base}/{path}" if path else base


def blob_files(settings) -> list[Path]:
    root = Path(settings.data_dir) / "artifacts" / "blobs"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


async def test_upload_list_download_delete(client, db, settings, alice) -> None:
    experiment = await new_experiment(client, alice)
    content = b"onnx-model-bytes" * 1000
    put = await client.put(
        url(experiment, "models/model.onnx"), content=content, headers=alice.headers
    )
    assert put.status_code == 201, put.text
    stored = put.json()
    assert stored["path"] == "models/model.onnx"
    assert stored["size"] == len(content)
    assert stored["sha256"] == hashlib.sha256(content).hexdigest()
    # no Content-Type sent (httpx sends none for bytes): guessed from the suffix, else binary
    plot = await client.put(
        url(experiment, "plots/loss.png"),
        content=b"\x89PNG",
        headers={**alice.headers, "Content-Type": "application/octet-stream"},
    )
    assert plot.json()["content_type"] == "image/png"
    csv = await client.put(
        url(experiment, "data.bin"),
        content=b"a,b",
        headers={**alice.headers, "Content-Type": "text/csv"},
    )
    assert csv.json()["content_type"] == "text/csv"

    listed = (await client.get(url(experiment), headers=alice.headers)).json()
    assert [a["path"] for a in listed["items"]] == [
        "data.bin",
        "models/model.onnx",
        "plots/loss.png",
    ]
    prefixed = await client.get(url(experiment), params={"prefix": "plots/"}, headers=alice.headers)
    assert [a["path"] for a in prefixed.json()["items"]] == ["plots/loss.png"]

    got = await client.get(url(experiment, "models/model.onnx"), headers=alice.headers)
    assert got.status_code == 200
    assert got.content == content
    assert got.headers["etag"] == f'"{stored["sha256"]}"'
    assert got.headers["accept-ranges"] == "bytes"
    assert got.headers["content-length"] == str(len(content))

    deleted = await client.delete(url(experiment, "models/model.onnx"), headers=alice.headers)
    assert deleted.status_code == 204
    gone = await client.get(url(experiment, "models/model.onnx"), headers=alice.headers)
    assert gone.status_code == 404
    again = await client.delete(url(experiment, "models/model.onnx"), headers=alice.headers)
    assert again.status_code == 404

    events = [e for e in await outbox(db) if e["type"].startswith("artifact.")]
    assert [e["type"] for e in events] == ["artifact.created"] * 3 + ["artifact.deleted"]
    assert events[0]["data"]["path"] == "models/model.onnx"
    assert events[0]["data"]["sha256"] == stored["sha256"]
    assert events[0]["subject"] == experiment["id"]
    assert events[3]["data"]["owner_id"] == str(alice.id)


async def test_a_second_upload_to_a_path_replaces_it(client, db, settings, alice) -> None:
    experiment = await new_experiment(client, alice)
    first = await client.put(url(experiment, "ckpt.pt"), content=b"v1", headers=alice.headers)
    second = await client.put(url(experiment, "ckpt.pt"), content=b"v2", headers=alice.headers)
    assert (first.status_code, second.status_code) == (201, 200)
    assert second.json()["id"] == first.json()["id"]
    got = await client.get(url(experiment, "ckpt.pt"), headers=alice.headers)
    assert got.content == b"v2"
    # the replaced content had no other artifact: its bytes are gone
    assert [p.name for p in blob_files(settings)] == [hashlib.sha256(b"v2").hexdigest()]
    events = [e for e in await outbox(db) if e["type"] == "artifact.created"]
    assert [e["data"]["replaced"] for e in events] == [False, True]


async def test_range_requests(client, alice) -> None:
    experiment = await new_experiment(client, alice)
    content = bytes(range(256)) * 40  # 10,240 bytes
    await client.put(url(experiment, "r.bin"), content=content, headers=alice.headers)
    target = url(experiment, "r.bin")

    async def get(range_: str):
        return await client.get(target, headers={**alice.headers, "Range": range_})

    middle = await get("bytes=100-199")
    assert middle.status_code == 206
    assert middle.content == content[100:200]
    assert middle.headers["content-range"] == f"bytes 100-199/{len(content)}"
    assert middle.headers["content-length"] == "100"
    tail = await get("bytes=10000-")
    assert (tail.status_code, tail.content) == (206, content[10000:])
    suffix = await get("bytes=-10")
    assert (suffix.status_code, suffix.content) == (206, content[-10:])
    past_end = await get("bytes=10200-99999")
    assert past_end.content == content[10200:]
    assert past_end.headers["content-range"] == f"bytes 10200-10239/{len(content)}"
    unsatisfiable = await get("bytes=10240-")
    assert unsatisfiable.status_code == 416
    assert unsatisfiable.headers["content-type"] == "application/problem+json"
    assert unsatisfiable.headers["content-range"] == f"bytes */{len(content)}"
    # syntax this server does not serve as a range: the whole file
    for header in ("bytes=5-1", "items=0-1", "bytes=0-1,5-6", "bytes=abc"):
        whole = await get(header)
        assert (whole.status_code, whole.content) == (200, content), header

    # HEAD: the same headers, no bytes
    head = await client.head(target, headers=alice.headers)
    assert (head.status_code, head.content) == (200, b"")
    assert head.headers["content-length"] == str(len(content))
    assert head.headers["etag"] == f'"{hashlib.sha256(content).hexdigest()}"'
    assert head.headers["accept-ranges"] == "bytes"
    ranged = await client.head(target, headers={**alice.headers, "Range": "bytes=100-199"})
    assert (ranged.status_code, ranged.content) == (206, b"")
    assert ranged.headers["content-length"] == "100"
    assert ranged.headers["content-range"] == f"bytes 100-199/{len(content)}"
    missing = await client.head(url(experiment, "nope.bin"), headers=alice.headers)
    assert missing.status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        # (httpx would resolve literal dot segments before sending: escape them)
        "%2E%2E/escape.txt",
        "a/%2E%2E/%2E%2E/b",
        "a/%2E/b",
        "a//b",
        "dir/",
        "%2Fabsolute",
        "nul%00byte",
        "back%5Cslash",
        "x" * 1025,
        "long/" + "y" * 256,
    ],
)
async def test_bad_paths_are_refused(client, alice, path) -> None:
    experiment = await new_experiment(client, alice)
    response = await client.put(url(experiment, path), content=b"x", headers=alice.headers)
    assert response.status_code == 422, (path, response.text)
    assert response.headers["content-type"] == "application/problem+json"
    listed = (await client.get(url(experiment), headers=alice.headers)).json()
    assert listed["items"] == []


async def test_size_limit_with_and_without_a_content_length(app_with, db, alice) -> None:
    async with app_with(artifact_max_bytes=1000) as client:
        experiment = await new_experiment(client, alice)
        declared = await client.put(
            url(experiment, "big"), content=b"x" * 1001, headers=alice.headers
        )
        assert declared.status_code == 413
        assert declared.json()["max_bytes"] == 1000

        async def chunked():
            for _ in range(20):
                yield b"y" * 100

        streamed = await client.put(
            url(experiment, "big"), content=chunked(), headers=alice.headers
        )
        assert streamed.status_code == 413
        assert "EXPERIMENTS_ARTIFACT_MAX_BYTES" in streamed.json()["detail"]
        fits = await client.put(url(experiment, "ok"), content=b"z" * 1000, headers=alice.headers)
        assert fits.status_code == 201
    rows = await fetch(db, "SELECT path FROM experiments.artifacts")
    assert [r["path"] for r in rows] == ["ok"]


async def test_quota_counts_every_artifact_of_the_owner(app_with, db, alice, bob) -> None:
    async with app_with(artifact_user_quota_bytes=2500) as client:
        one = await new_experiment(client, alice)
        two = await new_experiment(client, alice)
        assert (
            await client.put(url(one, "a"), content=b"a" * 1000, headers=alice.headers)
        ).status_code == 201
        assert (
            await client.put(url(two, "b"), content=b"b" * 1000, headers=alice.headers)
        ).status_code == 201
        over = await client.put(url(two, "c"), content=b"c" * 1000, headers=alice.headers)
        assert over.status_code == 413
        problem = over.json()
        assert problem["quota"] == "EXPERIMENTS_ARTIFACT_USER_QUOTA_BYTES"
        assert (problem["requested"], problem["limit"]) == (3000, 2500)

        async def chunked():
            yield b"d" * 1000

        over_streamed = await client.put(url(two, "d"), content=chunked(), headers=alice.headers)
        assert over_streamed.status_code == 413
        # replacing a file counts its new size, not both
        replace = await client.put(url(one, "a"), content=b"A" * 1400, headers=alice.headers)
        assert replace.status_code == 200
        # another user has their own quota
        bobs = await new_experiment(client, bob)
        assert (
            await client.put(url(bobs, "x"), content=b"x" * 2000, headers=bob.headers)
        ).status_code == 201
    rows = await fetch(db, "SELECT path FROM experiments.artifacts ORDER BY path")
    assert [r["path"] for r in rows] == ["a", "b", "x"]
    created = [e for e in await event_types(db) if e == "artifact.created"]
    assert len(created) == 4


async def test_another_users_experiment_is_404_and_viewers_only_read(
    client, alice, bob, viewer
) -> None:
    experiment = await new_experiment(client, alice)
    await client.put(url(experiment, "a.txt"), content=b"hello", headers=alice.headers)
    for response in (
        await client.put(url(experiment, "b.txt"), content=b"x", headers=bob.headers),
        await client.get(url(experiment, "a.txt"), headers=bob.headers),
        await client.get(url(experiment), headers=bob.headers),
        await client.delete(url(experiment, "a.txt"), headers=bob.headers),
    ):
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
    assert (await client.get(url(experiment, "a.txt"), headers=viewer.headers)).content == b"hello"
    assert (await client.get(url(experiment), headers=viewer.headers)).status_code == 200
    put = await client.put(url(experiment, "v.txt"), content=b"x", headers=viewer.headers)
    assert put.status_code == 403
    assert (
        await client.delete(url(experiment, "a.txt"), headers=viewer.headers)
    ).status_code == 403
    assert (await client.get(url(experiment, "a.txt"), headers=alice.headers)).content == b"hello"


async def test_identical_content_is_stored_once(client, db, settings, alice) -> None:
    one = await new_experiment(client, alice)
    two = await new_experiment(client, alice)
    content = b"same weights" * 100
    for experiment, path in ((one, "a.bin"), (one, "copy.bin"), (two, "b.bin")):
        response = await client.put(url(experiment, path), content=content, headers=alice.headers)
        assert response.status_code == 201
    digest = hashlib.sha256(content).hexdigest()
    assert [p.name for p in blob_files(settings)] == [digest]
    await client.delete(url(one, "a.bin"), headers=alice.headers)
    await client.delete(url(one, "copy.bin"), headers=alice.headers)
    assert [p.name for p in blob_files(settings)] == [digest]
    assert (await client.get(url(two, "b.bin"), headers=alice.headers)).content == content
    await client.delete(url(two, "b.bin"), headers=alice.headers)
    assert blob_files(settings) == []
    assert await fetch(db, "SELECT * FROM experiments.artifact_blobs") == []


async def test_pages_of_artifacts_by_path(client, alice) -> None:
    experiment = await new_experiment(client, alice)
    paths = [f"epoch-{n:02d}/ckpt.pt" for n in range(7)]
    for path in reversed(paths):
        await client.put(url(experiment, path), content=path.encode(), headers=alice.headers)
    seen, cursor = [], None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = (await client.get(url(experiment), params=params, headers=alice.headers)).json()
        seen += [a["path"] for a in page["items"]]
        if (cursor := page["next_cursor"]) is None:
            break
    assert seen == paths
