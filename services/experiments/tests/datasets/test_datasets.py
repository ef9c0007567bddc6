"""Datasets (CRUD, events) and their signals (bulk create of up to 10,000, idempotent)."""

from __future__ import annotations

import pytest

from services.experiments.tests.experiments_helpers import (
    event_types,
    fetch,
    new_experiment,
    outbox,
)


def signals(first: int, last: int) -> list[dict]:
    faults = ["normal", "inner_race", "outer_race", "ball"]
    return [
        {
            "signal_id": f"sig-{n:05d}",
            "fault_class": faults[n % 4],
            "severity": ["low", "high"][n % 2],
            "file_path": f"s3://cwru/{n:05d}.npy",
            "rms": 0.1 + n / 100_000,
            "kurtosis": 3.0 + (n % 7) / 10,
            "dominant_frequency": 157.9 + n % 3,
        }
        for n in range(first, last + 1)
    ]


async def test_dataset_crud_publishes_its_events(client, db, alice) -> None:
    created = await client.post(
        "/api/v1/datasets",
        json={"name": "cwru-12k", "fault_types": ["ball"], "meta_data": {"rate_hz": 12000}},
        headers=alice.headers,
    )
    assert created.status_code == 201, created.text
    dataset = created.json()
    url = f"/api/v1/datasets/{dataset['id']}"
    assert (await client.get(url, headers=alice.headers)).json() == dataset
    patched = await client.patch(url, json={"description": "drive end"}, headers=alice.headers)
    assert patched.json()["description"] == "drive end"
    unchanged = await client.patch(url, json={"description": "drive end"}, headers=alice.headers)
    assert unchanged.status_code == 200
    assert (await client.patch(url, json={"name": None}, headers=alice.headers)).status_code == 422
    listed = (await client.get("/api/v1/datasets", headers=alice.headers)).json()
    assert [d["id"] for d in listed["items"]] == [dataset["id"]]
    assert (await client.delete(url, headers=alice.headers)).status_code == 204
    assert (await client.get(url, headers=alice.headers)).status_code == 404

    events = await outbox(db)
    assert [e["type"] for e in events] == ["dataset.created", "dataset.updated", "dataset.deleted"]
    assert events[1]["data"]["changed"] == ["description"]
    assert [e["sequence"] for e in events] == ["1", "2", "3"]
    assert all(e["data"]["owner_id"] == str(alice.id) for e in events)


async def test_a_dataset_in_use_cannot_be_deleted(client, alice) -> None:
    dataset = (
        await client.post("/api/v1/datasets", json={"name": "d"}, headers=alice.headers)
    ).json()
    await new_experiment(client, alice, dataset_id=dataset["id"])
    response = await client.delete(f"/api/v1/datasets/{dataset['id']}", headers=alice.headers)
    assert response.status_code == 409
    assert response.json()["experiments"] == 1
    again = await client.post("/api/v1/datasets", json={"name": "d"}, headers=alice.headers)
    assert again.status_code == 409


@pytest.mark.slow
async def test_ten_thousand_signals_in_one_request_and_a_retry_adds_none(client, db, alice) -> None:
    dataset = (
        await client.post("/api/v1/datasets", json={"name": "d"}, headers=alice.headers)
    ).json()
    url = f"/api/v1/datasets/{dataset['id']}/signals"
    batch = {"signals": signals(0, 9_999)}

    first = await client.post(url, json=batch, headers=alice.headers)
    retry = await client.post(url, json=batch, headers=alice.headers)

    assert first.status_code == 201, first.text
    assert first.json() == {
        "dataset_id": dataset["id"],
        "received": 10_000,
        "inserted": 10_000,
        "skipped": 0,
        "num_signals": 10_000,
    }
    assert (retry.json()["inserted"], retry.json()["skipped"]) == (0, 10_000)
    count = await fetch(db, "SELECT count(*) AS n FROM experiments.signals")
    assert count[0]["n"] == 10_000
    stored = (await client.get(f"/api/v1/datasets/{dataset['id']}", headers=alice.headers)).json()
    assert stored["num_signals"] == 10_000
    assert stored["fault_types"] == ["ball", "inner_race", "normal", "outer_race"]
    assert stored["severity_levels"] == ["high", "low"]
    # one dataset.updated for the batch that added signals, none for the retry
    assert await event_types(db) == ["dataset.created", "dataset.updated"]


async def test_signal_batches_are_bounded_and_validated(client, alice) -> None:
    dataset = (
        await client.post("/api/v1/datasets", json={"name": "d"}, headers=alice.headers)
    ).json()
    url = f"/api/v1/datasets/{dataset['id']}/signals"
    too_many = await client.post(url, json={"signals": signals(0, 10_000)}, headers=alice.headers)
    negative_rms = await client.post(
        url, json={"signals": [{"signal_id": "x", "rms": -1}]}, headers=alice.headers
    )
    empty = await client.post(url, json={"signals": []}, headers=alice.headers)
    assert [too_many.status_code, negative_rms.status_code, empty.status_code] == [422] * 3


async def test_signals_page_in_insertion_order_and_filter_by_class(client, alice) -> None:
    dataset = (
        await client.post("/api/v1/datasets", json={"name": "d"}, headers=alice.headers)
    ).json()
    url = f"/api/v1/datasets/{dataset['id']}/signals"
    await client.post(url, json={"signals": signals(0, 29)}, headers=alice.headers)
    seen, cursor = [], None
    while True:
        params = {"limit": 7, **({"cursor": cursor} if cursor else {})}
        page = (await client.get(url, params=params, headers=alice.headers)).json()
        seen += [s["signal_id"] for s in page["items"]]
        if (cursor := page["next_cursor"]) is None:
            break
    assert seen == [f"sig-{n:05d}" for n in range(30)]
    balls = (await client.get(url, params={"fault_class": "ball"}, headers=alice.headers)).json()
    assert {s["fault_class"] for s in balls["items"]} == {"ball"}
    assert len(balls["items"]) == 7
    first = balls["items"][0]
    assert (first["rms"], first["kurtosis"], first["dominant_frequency"]) == (
        0.1 + 3 / 100_000,
        3.3,
        157.9,
    )
