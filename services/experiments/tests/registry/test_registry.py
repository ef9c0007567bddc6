"""The model registry over the API: models CRUD and search, versions made from experiment
artifacts (numbering under concurrent creates, size and hash, status), JSON Schema checks,
aliases (atomic moves under concurrent requests), archive and delete rules, access rules and
the events written in the same transaction."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
from collections import Counter

import pytest

from services.experiments.tests.experiments_helpers import (
    act,
    deliver_own_events,
    fetch,
    new_experiment,
    outbox,
)

URL = "/api/v1/models"


async def new_model(client, who, name="pump-cnn", **fields) -> dict:
    response = await client.post(URL, json={"name": name, **fields}, headers=who.headers)
    assert response.status_code == 201, response.text
    return response.json()


async def upload(client, who, experiment, path, content: bytes) -> None:
    put = await client.put(
        f"/api/v1/experiments/{experiment['id']}/artifacts/{path}",
        content=content,
        headers=who.headers,
    )
    assert put.status_code == 201, put.text


async def trained(client, who, **fields) -> dict:
    """An experiment with a model file uploaded."""
    experiment = await new_experiment(client, who, **fields)
    await upload(client, who, experiment, "model/model.onnx", b"weights" * 100)
    await upload(client, who, experiment, "model/MLmodel", b"flavors: {}")
    return experiment


async def new_version(client, who, model, experiment, path="model", **fields):
    return await client.post(
        f"{URL}/{model['id']}/versions",
        json={"experiment_id": experiment["id"], "artifact_path": path, **fields},
        headers=who.headers,
    )


async def test_pending_versions_settle_when_their_experiment_ends(client, db, alice) -> None:
    """No ``verify`` needed: the experiment's end (its event, through the service's own
    consumer) makes each pending version ready if its artifact arrived, else failed."""
    model = await new_model(client, alice)
    running = await new_experiment(client, alice)
    await act(client, alice, running["id"], "start")
    arrives = (await new_version(client, alice, model, running, "late/model.pt")).json()
    never = (await new_version(client, alice, model, running, "never/model.pt")).json()
    assert (arrives["status"], never["status"]) == ("pending", "pending")
    await upload(client, alice, running, "late/model.pt", b"late weights")
    other = await new_experiment(client, alice)  # still running: its version stays pending
    await act(client, alice, other["id"], "start")
    waiting = (await new_version(client, alice, model, other, "model.pt")).json()

    done = await act(client, alice, running["id"], "complete", final_metrics={"acc": 0.9})
    assert done.status_code == 200, done.text
    assert await deliver_own_events(db) > 0

    async def status(version: dict) -> tuple[str, int | None]:
        url = f"{URL}/{model['id']}/versions/{version['version']}"
        found = (await client.get(url, headers=alice.headers)).json()
        return found["status"], found["size"]

    assert await status(arrives) == ("ready", len(b"late weights"))
    assert await status(never) == ("failed", None)
    assert await status(waiting) == ("pending", None)


async def test_model_crud_search_and_events(client, db, alice, bob) -> None:
    model = await new_model(client, alice, description="pump faults", tags={"team": "ml"})
    assert (model["last_version"], model["aliases"], model["tags"]) == (0, {}, {"team": "ml"})
    url = f"{URL}/{model['id']}"
    assert (await client.get(url, headers=alice.headers)).json() == model
    await new_model(client, alice, "bearing-lstm", tags={"team": "ops"})
    await new_model(client, bob, "pump-cnn")  # names are unique per owner only
    taken = await client.post(URL, json={"name": "pump-cnn"}, headers=alice.headers)
    assert taken.status_code == 409
    assert taken.headers["content-type"] == "application/problem+json"
    assert taken.json()["field"] == "name"

    async def names(**params) -> list[str]:
        page = await client.get(URL, params=params, headers=alice.headers)
        assert page.status_code == 200, page.text
        return [m["name"] for m in page.json()["items"]]

    assert await names() == ["bearing-lstm", "pump-cnn"]
    assert await names(name_contains="CNN") == ["pump-cnn"]
    assert await names(name_contains="%") == []
    assert await names(name_prefix="bear") == ["bearing-lstm"]
    assert await names(tag="team=ml") == ["pump-cnn"]
    assert await names(tag="team") == ["bearing-lstm", "pump-cnn"]
    first = (await client.get(URL, params={"limit": 1}, headers=alice.headers)).json()
    second = await client.get(
        URL, params={"limit": 1, "cursor": first["next_cursor"]}, headers=alice.headers
    )
    assert [m["name"] for m in second.json()["items"]] == ["pump-cnn"]
    assert second.json()["next_cursor"] is None

    renamed = await client.patch(url, json={"name": "pump-cnn-2"}, headers=alice.headers)
    assert renamed.json()["name"] == "pump-cnn-2"
    clash = await client.patch(url, json={"name": "bearing-lstm"}, headers=alice.headers)
    assert clash.status_code == 409
    assert (await client.patch(url, json={"tags": None}, headers=alice.headers)).status_code == 422
    # another user's model does not exist for them
    assert (await client.get(url, headers=bob.headers)).status_code == 404
    assert (await client.delete(url, headers=bob.headers)).status_code == 404
    assert (await client.delete(url, headers=alice.headers)).status_code == 204
    assert (await client.get(url, headers=alice.headers)).status_code == 404

    registered = [e for e in await outbox(db) if e["type"] == "model.registered"]
    assert len(registered) == 3
    assert registered[0]["subject"] == model["id"]
    assert registered[0]["data"]["model_name"] == "pump-cnn"
    assert registered[0]["data"]["owner_id"] == str(alice.id)


async def test_versions_come_from_artifacts_with_size_hash_and_lineage(client, db, alice) -> None:
    experiment = await trained(client, alice, best_metric="val_accuracy", best_mode="max")
    await act(client, alice, experiment["id"], "start")
    model = await new_model(client, alice)

    directory = await new_version(client, alice, model, experiment, "model")
    assert directory.status_code == 201, directory.text
    v1 = directory.json()
    files = sorted(
        [
            ("model/MLmodel", b"flavors: {}"),
            ("model/model.onnx", b"weights" * 100),
        ]
    )
    manifest = "".join(
        f"{hashlib.sha256(c).hexdigest()}  {p.removeprefix('model/')}\n" for p, c in files
    )
    assert (v1["version"], v1["status"], v1["file_count"]) == (1, "ready", 2)
    assert v1["size"] == sum(len(c) for _, c in files)
    assert v1["sha256"] == hashlib.sha256(manifest.encode()).hexdigest()
    assert v1["experiment_id"] == experiment["id"]

    single = (await new_version(client, alice, model, experiment, "model/model.onnx")).json()
    assert (single["version"], single["status"], single["file_count"]) == (2, "ready", 1)
    assert single["sha256"] == hashlib.sha256(b"weights" * 100).hexdigest()

    # not uploaded yet while the experiment runs: pending, then ready once it is there
    pending = (await new_version(client, alice, model, experiment, "later/model.pt")).json()
    assert (pending["version"], pending["status"]) == (3, "pending")
    await upload(client, alice, experiment, "later/model.pt", b"late")
    verified = await client.post(f"{URL}/{model['id']}/versions/3/verify", headers=alice.headers)
    assert (verified.json()["status"], verified.json()["size"]) == ("ready", 4)

    # missing, and the experiment has ended: failed
    await act(client, alice, experiment["id"], "complete", final_metrics={"val_accuracy": 0.962})
    failed = (await new_version(client, alice, model, experiment, "nowhere")).json()
    assert (failed["status"], failed["size"]) == ("failed", None)
    assert "no artifact" in failed["status_message"]

    listed = (await client.get(f"{URL}/{model['id']}/versions", headers=alice.headers)).json()
    assert [v["version"] for v in listed["items"]] == [4, 3, 2, 1]
    page = await client.get(
        f"{URL}/{model['id']}/versions", params={"limit": 3}, headers=alice.headers
    )
    rest = await client.get(
        f"{URL}/{model['id']}/versions",
        params={"limit": 3, "cursor": page.json()["next_cursor"]},
        headers=alice.headers,
    )
    assert [v["version"] for v in rest.json()["items"]] == [1]
    ready = await client.get(
        f"{URL}/{model['id']}/versions", params={"status": "ready"}, headers=alice.headers
    )
    assert [v["version"] for v in ready.json()["items"]] == [3, 2, 1]
    # lineage: the versions an experiment produced
    other = await trained(client, alice)
    await new_version(client, alice, model, other)
    made_by = await client.get(
        f"{URL}/{model['id']}/versions",
        params={"experiment_id": other["id"]},
        headers=alice.headers,
    )
    assert [v["version"] for v in made_by.json()["items"]] == [5]

    created = [e for e in await outbox(db) if e["type"] == "model_version.created"]
    assert [e["data"]["model_version"] for e in created] == [1, 2, 3, 4, 5]
    assert created[0]["data"]["experiment_id"] == experiment["id"]
    assert created[0]["data"]["sha256"] == v1["sha256"]
    assert created[3]["data"]["metric_name"] == "val_accuracy"
    assert created[3]["data"]["metric_value"] == pytest.approx(0.962)


async def test_version_numbers_are_unique_under_concurrent_creates(client, db, alice) -> None:
    experiment = await trained(client, alice)
    model = await new_model(client, alice)
    responses = await asyncio.gather(
        *(new_version(client, alice, model, experiment) for _ in range(12))
    )
    assert [r.status_code for r in responses] == [201] * 12
    assert sorted(r.json()["version"] for r in responses) == list(range(1, 13))
    again = (await client.get(f"{URL}/{model['id']}", headers=alice.headers)).json()
    assert again["last_version"] == 12
    rows = await fetch(
        db, "SELECT version FROM experiments.model_versions WHERE model_id = $1", again["id"]
    )
    assert sorted(r["version"] for r in rows) == list(range(1, 13))


@pytest.mark.parametrize(
    ("field", "schema"),
    [
        ("input_schema", {"type": "tensor"}),
        ("output_schema", {"type": "object", "properties": {"y": {"minimum": "zero"}}}),
        ("input_schema", {"required": "x"}),
        # a $ref to another document would make the service fetch a URL (SSRF): refused
        ("input_schema", {"$ref": "http://127.0.0.1:9/schema.json"}),
        ("output_schema", {"properties": {"y": {"$ref": "https://example.com/y.json#/a"}}}),
    ],
)
async def test_invalid_json_schemas_are_422_naming_the_field(
    client, db, alice, field, schema
) -> None:
    experiment = await trained(client, alice)
    model = await new_model(client, alice)
    refused = await new_version(client, alice, model, experiment, **{field: schema})
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["errors"][0]["loc"] == ["body", field]
    # nothing was written: no version, no number taken, no event
    assert (await client.get(f"{URL}/{model['id']}", headers=alice.headers)).json()[
        "last_version"
    ] == 0
    assert "model_version.created" not in [e["type"] for e in await outbox(db)]


async def test_valid_schemas_and_other_bad_input(client, alice, bob) -> None:
    experiment = await trained(client, alice)
    model = await new_model(client, alice)
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {"signal": {"type": "array", "items": {"type": "number"}}},
        "required": ["signal"],
    }
    ok = await new_version(client, alice, model, experiment, input_schema=schema)
    assert ok.status_code == 201, ok.text
    assert ok.json()["input_schema"] == schema
    bad_update = await client.patch(
        f"{URL}/{model['id']}/versions/1",
        json={"output_schema": {"type": 3}},
        headers=alice.headers,
    )
    assert bad_update.status_code == 422
    assert bad_update.json()["errors"][0]["loc"] == ["body", "output_schema"]

    others = await trained(client, bob)
    unknown = await new_version(client, alice, model, others)
    assert unknown.status_code == 422
    assert unknown.json()["errors"][0]["loc"] == ["body", "experiment_id"]
    bad_path = await new_version(client, alice, model, experiment, "../etc/passwd")
    assert bad_path.status_code == 422
    assert bad_path.json()["errors"][0]["loc"] == ["body", "artifact_path"]
    missing = await client.get(f"{URL}/{model['id']}/versions/9", headers=alice.headers)
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"


async def test_aliases_move_atomically_and_guard_deletes(client, db, alice) -> None:
    experiment = await trained(client, alice)
    model = await new_model(client, alice)
    for _ in range(3):
        assert (await new_version(client, alice, model, experiment)).status_code == 201
    aliases = f"{URL}/{model['id']}/aliases"

    first = await client.put(f"{aliases}/champion", json={"version": 1}, headers=alice.headers)
    assert first.json() == {"alias": "champion", "version": 1, "previous_version": None}
    moved = await client.put(f"{aliases}/champion", json={"version": 2}, headers=alice.headers)
    assert moved.json() == {"alias": "champion", "version": 2, "previous_version": 1}
    same = await client.put(f"{aliases}/champion", json={"version": 2}, headers=alice.headers)
    assert same.status_code == 200
    by_alias = (await client.get(f"{aliases}/champion", headers=alice.headers)).json()
    assert (by_alias["version"], by_alias["aliases"]) == (2, ["champion"])
    assert (await client.get(f"{URL}/{model['id']}", headers=alice.headers)).json()["aliases"] == {
        "champion": 2
    }
    found = await client.get(URL, params={"alias": "champion"}, headers=alice.headers)
    assert [m["id"] for m in found.json()["items"]] == [model["id"]]

    for bad in ("latest", "v3", "has space", "-dash-first"):
        refused = await client.put(f"{aliases}/{bad}", json={"version": 1}, headers=alice.headers)
        assert refused.status_code == 422, bad
    unknown = await client.put(f"{aliases}/x", json={"version": 99}, headers=alice.headers)
    assert unknown.status_code == 422
    assert unknown.json()["errors"][0]["loc"] == ["body", "version"]

    # a version holding an alias can be neither deleted nor archived
    held = await client.delete(f"{URL}/{model['id']}/versions/2", headers=alice.headers)
    assert held.status_code == 409
    assert held.headers["content-type"] == "application/problem+json"
    assert held.json()["aliases"] == ["champion"]
    archive = await client.post(f"{URL}/{model['id']}/versions/2/archive", headers=alice.headers)
    assert archive.status_code == 409
    # others can
    archived = await client.post(f"{URL}/{model['id']}/versions/1/archive", headers=alice.headers)
    assert archived.json()["archived_at"] is not None
    listed = (await client.get(f"{URL}/{model['id']}/versions", headers=alice.headers)).json()
    assert [v["version"] for v in listed["items"]] == [3, 2]
    with_archived = await client.get(
        f"{URL}/{model['id']}/versions", params={"archived": "true"}, headers=alice.headers
    )
    assert [v["version"] for v in with_archived.json()["items"]] == [3, 2, 1]
    to_archived = await client.put(
        f"{aliases}/challenger", json={"version": 1}, headers=alice.headers
    )
    assert to_archived.status_code == 409
    assert (
        await client.delete(f"{URL}/{model['id']}/versions/3", headers=alice.headers)
    ).status_code == 204
    # the alias goes, then its version can
    assert (await client.delete(f"{aliases}/champion", headers=alice.headers)).status_code == 204
    assert (await client.get(f"{aliases}/champion", headers=alice.headers)).status_code == 404
    assert (await client.delete(f"{aliases}/champion", headers=alice.headers)).status_code == 404
    assert (
        await client.delete(f"{URL}/{model['id']}/versions/2", headers=alice.headers)
    ).status_code == 204
    # numbers are never reused
    assert (await new_version(client, alice, model, experiment)).json()["version"] == 4

    events = [e for e in await outbox(db) if e["type"].startswith("model_version.a")]
    assert [(e["type"], e["data"].get("alias", None)) for e in events] == [
        ("model_version.alias_set", "champion"),
        ("model_version.alias_set", "champion"),
        ("model_version.archived", None),
        ("model_version.alias_removed", "champion"),
    ]
    assert events[1]["data"]["previous_version"] == 1
    assert events[1]["data"]["model_version"] == 2
    assert events[2]["data"]["model_version"] == 1


async def test_concurrent_alias_moves_have_one_winner_and_no_torn_state(client, db, alice) -> None:
    experiment = await trained(client, alice)
    model = await new_model(client, alice)
    for _ in range(6):
        await new_version(client, alice, model, experiment)
    aliases = f"{URL}/{model['id']}/aliases"
    holder = None
    for round_ in range(3):
        moves = await asyncio.gather(
            *(
                client.put(f"{aliases}/champion", json={"version": v}, headers=alice.headers)
                for v in range(1, 7)
            )
        )
        assert [m.status_code for m in moves] == [200] * 6, round_
        rows = await fetch(
            db,
            "SELECT v.version FROM experiments.model_aliases a JOIN experiments.model_versions v"
            " ON v.id = a.version_id WHERE a.model_id = $1 AND a.alias = 'champion'",
            model["id"],
        )
        assert len(rows) == 1
        # the moves queued, each seeing the one before it: the previous versions they report
        # are the holder before the round and every target but the last one's
        final = rows[0]["version"]
        previous = Counter(m.json()["previous_version"] for m in moves)
        assert previous == Counter([holder, *(v for v in range(1, 7) if v != final)]), round_
        holder = final
    events = [e for e in await outbox(db) if e["type"] == "model_version.alias_set"]
    assert len(events) >= 3 * 5
    # every event's previous version is the version of the event before it
    for before, after in itertools.pairwise(events):
        assert after["data"]["previous_version"] == before["data"]["model_version"]
    final = (await client.get(f"{aliases}/champion", headers=alice.headers)).json()
    assert final["version"] == events[-1]["data"]["model_version"]


async def test_concurrent_alias_move_and_version_delete(client, db, alice) -> None:
    experiment = await trained(client, alice)
    model = await new_model(client, alice)
    for _ in range(2):
        await new_version(client, alice, model, experiment)
    for round_ in range(4):
        number = (await new_version(client, alice, model, experiment)).json()["version"]
        moved, deleted = await asyncio.gather(
            client.put(
                f"{URL}/{model['id']}/aliases/champion",
                json={"version": number},
                headers=alice.headers,
            ),
            client.delete(f"{URL}/{model['id']}/versions/{number}", headers=alice.headers),
        )
        # either the alias got there first (the delete is refused) or the delete did (the
        # move finds no version): never an alias on a deleted version
        outcome = (moved.status_code, deleted.status_code)
        assert outcome in ((200, 409), (422, 204)), (round_, outcome)
        holder = await client.get(f"{URL}/{model['id']}/aliases/champion", headers=alice.headers)
        if moved.status_code == 200:
            assert holder.json()["version"] == number


def sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


async def test_a_versions_files_are_listed_and_downloaded(client, alice, bob, viewer) -> None:
    """A version's files by Runyard's own API: paths within the version (a one-file version:
    the file's name), their manifest hashing to the version's ``sha256``, downloads with
    ``Range`` and ``HEAD``; nothing outside the version, nothing for another user."""
    experiment = await trained(client, alice)
    await upload(client, alice, experiment, "notes.txt", b"not the model")
    model = await new_model(client, alice)
    assert (await new_version(client, alice, model, experiment, "model")).status_code == 201
    one = await new_version(client, alice, model, experiment, "model/model.onnx")
    assert one.status_code == 201
    base = f"{URL}/{model['id']}/versions"

    listed = await client.get(f"{base}/1/files", headers=alice.headers)
    assert listed.status_code == 200, listed.text
    assert [(f["path"], f["size"], f["sha256"]) for f in listed.json()] == [
        ("MLmodel", 11, sha(b"flavors: {}")),
        ("model.onnx", 700, sha(b"weights" * 100)),
    ]
    v1 = (await client.get(f"{base}/1", headers=alice.headers)).json()
    manifest = "".join(f"{f['sha256']}  {f['path']}\n" for f in listed.json())
    assert sha(manifest.encode()) == v1["sha256"]
    single = (await client.get(f"{base}/2/files", headers=alice.headers)).json()
    assert [(f["path"], f["sha256"]) for f in single] == [("model.onnx", one.json()["sha256"])]

    got = await client.get(f"{base}/1/files/model.onnx", headers=alice.headers)
    assert (got.status_code, got.content) == (200, b"weights" * 100)
    assert got.headers["etag"] == f'"{sha(b"weights" * 100)}"'
    part = await client.get(
        f"{base}/2/files/model.onnx", headers={**alice.headers, "Range": "bytes=0-6"}
    )
    assert (part.status_code, part.content) == (206, b"weights")
    assert part.headers["content-range"] == "bytes 0-6/700"
    head = await client.head(f"{base}/1/files/MLmodel", headers=alice.headers)
    assert (head.status_code, head.headers["content-length"], head.content) == (200, "11", b"")

    # only the version's own files, by their paths within it
    for path in ("notes.txt", "model/MLmodel", "missing", "model.onnx/x"):
        refused = await client.get(f"{base}/1/files/{path}", headers=alice.headers)
        assert refused.status_code == 404, path
        assert refused.headers["content-type"] == "application/problem+json"
    assert (await client.get(f"{base}/9/files", headers=alice.headers)).status_code == 404
    # a viewer reads them; another user does not learn the model exists
    shown = await client.get(f"{base}/1/files/MLmodel", headers=viewer.headers)
    assert (shown.status_code, shown.content) == (200, b"flavors: {}")
    assert (await client.get(f"{base}/1/files", headers=bob.headers)).status_code == 404
    assert (await client.get(f"{base}/1/files/MLmodel", headers=bob.headers)).status_code == 404

    # a pending version has no files yet
    running = await new_experiment(client, alice)
    await act(client, alice, running["id"], "start")
    pending = (await new_version(client, alice, model, running, "later")).json()
    assert pending["status"] == "pending"
    waiting = await client.get(f"{base}/{pending['version']}/files", headers=alice.headers)
    assert waiting.json() == []


async def test_access_rules(client, alice, bob, viewer, admin) -> None:
    experiment = await trained(client, alice)
    model = await new_model(client, alice)
    assert (await new_version(client, alice, model, experiment)).status_code == 201
    assert (await new_version(client, bob, model, experiment)).status_code == 404
    assert (await client.get(f"{URL}/{model['id']}", headers=viewer.headers)).status_code == 200
    assert (
        await client.put(
            f"{URL}/{model['id']}/aliases/champion", json={"version": 1}, headers=viewer.headers
        )
    ).status_code == 403
    assert (await client.post(URL, json={"name": "x"}, headers=viewer.headers)).status_code == 403
    assert (
        await client.put(
            f"{URL}/{model['id']}/aliases/champion", json={"version": 1}, headers=admin.headers
        )
    ).status_code == 200
    listed = await client.get(URL, headers=bob.headers)
    assert listed.json()["items"] == []
