"""Logging predictions: single and batch, JSON Schema checks naming the first mismatch, batch
limits, time limits, all or nothing, access, and newest-first keyset pages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.experiments.tests.experiments_helpers import fetch
from services.experiments.tests.predictions.conftest import url

SCHEMA = {
    "type": "object",
    "properties": {
        "rpm": {"type": "number", "minimum": 0},
        "signal": {"type": "array", "items": {"type": "number"}},
    },
    "required": ["rpm", "signal"],
}


async def stored(db, version) -> int:
    rows = await fetch(
        db,
        "SELECT count(*) AS n FROM experiments.predictions WHERE version_id = $1",
        version["version_id"],
    )
    return int(rows[0]["n"])


async def test_single_and_batch_are_stored_and_listed_newest_first(
    client, db, alice, new_version
) -> None:
    version = await new_version(alice.id)
    one = await client.post(
        url(version),
        json={"input": {"rpm": 1}, "output": "ok", "confidence": 0.5, "latency_ms": 3.5},
        headers=alice.headers,
    )
    assert one.status_code == 201, one.text
    assert one.json()["count"] == 1
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    batch = [
        {
            "input": {"i": i},
            "output": {"label": i % 3},
            "confidence": None if i == 4 else i / 10,
            "latency_ms": float(i),
            "time": (base + timedelta(seconds=i)).isoformat(),
            **({"error": "timeout"} if i == 7 else {}),
        }
        for i in range(10)
    ]
    response = await client.post(url(version), json={"predictions": batch}, headers=alice.headers)
    assert response.status_code == 201, response.text
    assert response.json() == {
        "model": "pump-cnn",
        "version": 1,
        "version_id": str(version["version_id"]),
        "count": 10,
        "replayed": False,
    }
    assert await stored(db, version) == 11

    # newest first, keyset pages of 4 (the single one, timed now, comes first)
    seen, cursor = [], None
    while True:
        params = {"limit": 4, **({"cursor": cursor} if cursor else {})}
        page = await client.get(url(version), params=params, headers=alice.headers)
        assert page.status_code == 200, page.text
        seen += page.json()["items"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 11
    assert seen[0]["input"] == {"rpm": 1} and seen[0]["output"] == "ok"
    assert [s["input"]["i"] for s in seen[1:]] == list(range(9, -1, -1))
    assert seen[3]["error"] == "timeout" and seen[1]["error"] is None
    assert seen[6]["confidence"] is None
    times = [datetime.fromisoformat(s["time"]) for s in seen]
    assert times == sorted(times, reverse=True)
    # a window
    window = await client.get(
        url(version),
        params={
            "from": (base + timedelta(seconds=2)).isoformat(),
            "to": (base + timedelta(seconds=5)).isoformat(),
        },
        headers=alice.headers,
    )
    assert [s["input"]["i"] for s in window.json()["items"]] == [4, 3, 2]
    bad = await client.get(url(version), params={"cursor": "garbage"}, headers=alice.headers)
    assert bad.status_code == 400


async def test_input_schema_names_the_first_mismatch_and_writes_nothing(
    client, db, alice, new_version
) -> None:
    version = await new_version(alice.id, input_schema=SCHEMA)
    good = {"input": {"rpm": 1500, "signal": [0.1, 0.2]}, "latency_ms": 1}
    bad = {"input": {"rpm": 1500, "signal": [0.1, "x"]}, "latency_ms": 1}
    worse = {"input": {"signal": []}, "latency_ms": 1}
    response = await client.post(
        url(version), json={"predictions": [good, good, bad, worse]}, headers=alice.headers
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["errors"][0]["loc"] == ["body", "predictions", 2, "input", "signal", 1]
    assert "predictions[2].input/signal/1" in problem["detail"]
    assert await stored(db, version) == 0

    single = await client.post(url(version), json=worse, headers=alice.headers)
    assert single.status_code == 422
    assert single.json()["errors"][0]["loc"] == ["body", "input"]
    assert "rpm" in single.json()["detail"]

    # the cached validator keeps working; valid inputs go in
    ok = await client.post(url(version), json={"predictions": [good] * 3}, headers=alice.headers)
    assert ok.status_code == 201
    assert await stored(db, version) == 3


async def test_field_errors_limits_and_all_or_nothing(client, db, alice, new_version) -> None:
    version = await new_version(alice.id)
    row = {"input": [1, 2], "latency_ms": 2.0, "confidence": 0.9}

    async def post(body):
        return await client.post(url(version), json=body, headers=alice.headers)

    cases = [
        (
            {"predictions": [row, {**row, "confidence": 1.5}]},
            ["body", "predictions", 1, "confidence"],
        ),
        (
            {"predictions": [row, row, {**row, "latency_ms": -1}]},
            ["body", "predictions", 2, "latency_ms"],
        ),
        ({"predictions": [row, {"latency_ms": 1}]}, ["body", "predictions", 1, "input"]),
        ({"predictions": [{**row, "extra": 1}]}, ["body", "predictions", 0, "extra"]),
        ({"predictions": []}, ["body", "predictions"]),
        ({"predictions": [row] * 10_001}, ["body", "predictions"]),
        ({**row, "latency_ms": "slow"}, ["body", "latency_ms"]),
    ]
    for body, loc in cases:
        response = await post(body)
        assert response.status_code == 422, (loc, response.text)
        assert response.json()["errors"][0]["loc"] == loc
    not_json = await client.post(
        url(version),
        content=b"{nope",
        headers={**alice.headers, "content-type": "application/json"},
    )
    assert not_json.status_code == 422

    now = datetime.now(UTC)
    too_old = (now - timedelta(days=500)).isoformat()
    future = (now + timedelta(days=2)).isoformat()
    naive = now.replace(tzinfo=None).isoformat()
    for when in (too_old, future, naive):
        response = await post({"predictions": [row, {**row, "time": when}]})
        assert response.status_code == 422, when
        assert response.json()["errors"][0]["loc"] == ["body", "predictions", 1, "time"]
    # what PostgreSQL refuses and pydantic does not (a NUL in a JSON string): 422, not 500
    nul = await post({"predictions": [row, {**row, "input": "a\u0000b"}]})
    assert nul.status_code == 422, nul.text
    assert await stored(db, version) == 0

    full = await post({"predictions": [row] * 10_000})
    assert full.status_code == 201
    assert await stored(db, version) == 10_000


async def test_access_rules(client, db, alice, bob, viewer, new_version) -> None:
    version = await new_version(alice.id)
    archived = await new_version(alice.id, number=2, archived=True)
    row = {"input": 1, "latency_ms": 1}
    assert (await client.post(url(version), json=row, headers=bob.headers)).status_code == 404
    assert (await client.get(url(version), headers=bob.headers)).status_code == 404
    wrong = dict(version, version=9)
    assert (await client.post(url(wrong), json=row, headers=alice.headers)).status_code == 404
    assert (await client.post(url(version), json=row, headers=viewer.headers)).status_code == 403
    gone = await client.post(url(archived), json=row, headers=alice.headers)
    assert gone.status_code == 409
    # by the model's id, and an admin's/viewer's read of another owner's model
    by_id = f"/api/v1/models/{version['model_id']}/versions/1/predictions"
    assert (await client.post(by_id, json=row, headers=alice.headers)).status_code == 201
    assert (await client.post(by_id, json=row, headers=bob.headers)).status_code == 404
    read = await client.get(
        url(version), params={"owner_id": str(alice.id)}, headers=viewer.headers
    )
    assert read.status_code == 200
    assert len(read.json()["items"]) == 1
    assert await stored(db, version) == 1
