"""NAS campaigns: trials with architectures, duplicate detection, best trial, completion."""

from __future__ import annotations

from typing import Any

from services.experiments.tests.experiments_helpers import event_types, fetch, outbox

ARCH = {
    "layers": [
        {"type": "conv1d", "filters": 32, "kernel": 7},
        {"type": "conv1d", "filters": 64, "kernel": 5},
        {"type": "dense", "units": 128},
    ],
    "dropout": 0.25,
}


async def new_campaign(client, who, num_trials: int = 3) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/nas-campaigns",
        json={
            "name": "cnn1d-nas",
            "search_algorithm": "evolution",
            "num_trials": num_trials,
            "max_epochs_per_trial": 20,
            "search_space_config": {"filters": [16, 32, 64], "kernel": [3, 5, 7]},
        },
        headers=who.headers,
    )
    assert response.status_code == 201, response.text
    return response.json()


def variant(filters: int) -> dict[str, Any]:
    return {**ARCH, "layers": [{**ARCH["layers"][0], "filters": filters}, *ARCH["layers"][1:]]}


async def add(client, who, campaign_id: str, architecture: dict[str, Any], **fields: Any) -> Any:
    return await client.post(
        f"/api/v1/nas-campaigns/{campaign_id}/trials",
        json={"architecture": architecture, **fields},
        headers=who.headers,
    )


async def test_the_same_architecture_twice_is_a_409_pointing_at_the_first_trial(
    client, db, alice
) -> None:
    campaign = await new_campaign(client, alice)
    first = await add(client, alice, campaign["id"], ARCH, validation_accuracy=0.91)
    assert first.status_code == 201
    # the same architecture: keys in another order, 7.0 for 7
    reordered = {
        "dropout": 0.25,
        "layers": [
            {"kernel": 7.0, "filters": 32, "type": "conv1d"},
            {"kernel": 5, "type": "conv1d", "filters": 64},
            {"units": 128, "type": "dense"},
        ],
    }
    again = await add(client, alice, campaign["id"], reordered, validation_accuracy=0.95)
    assert again.status_code == 409
    assert again.headers["content-type"] == "application/problem+json"
    body = again.json()
    assert body["existing_trial_id"] == first.json()["id"]
    assert body["existing_trial_number"] == 0
    assert body["architecture_hash"] == first.json()["architecture_hash"]
    rows = await fetch(db, "SELECT count(*) AS n FROM experiments.nas_trials")
    assert rows[0]["n"] == 1
    # a different architecture is welcome, and the same one in another campaign too
    assert (await add(client, alice, campaign["id"], variant(16))).status_code == 201
    other = await client.post(
        "/api/v1/nas-campaigns",
        json={"name": "other", "search_algorithm": "random", "num_trials": 2},
        headers=alice.headers,
    )
    assert (await add(client, alice, other.json()["id"], ARCH)).status_code == 201


async def test_the_campaign_keeps_its_best_trial_and_completes_at_its_budget(
    client, db, alice
) -> None:
    campaign = await new_campaign(client, alice, num_trials=3)
    trials = []
    for filters, accuracy in ((16, 0.90), (32, 0.96), (64, 0.93)):
        response = await add(
            client,
            alice,
            campaign["id"],
            variant(filters),
            validation_accuracy=accuracy,
            num_parameters=filters * 1000,
            flops=filters * 10**6,
            model_size_mb=filters / 10,
            metrics={"f1_macro": accuracy - 0.01},
        )
        assert response.status_code == 201, response.text
        trials.append(response.json())
    assert [t["trial_number"] for t in trials] == [0, 1, 2]
    done = (
        await client.get(f"/api/v1/nas-campaigns/{campaign['id']}", headers=alice.headers)
    ).json()
    assert (done["status"], done["trials_completed"]) == ("completed", 3)
    assert (done["best_trial_id"], done["best_accuracy"]) == (trials[1]["id"], 0.96)
    assert "nas_campaign.completed" in await event_types(db)
    event = next(e for e in await outbox(db) if e["type"] == "nas_campaign.completed")
    assert event["data"]["best_architecture"] == variant(32)
    assert event["data"]["best_trial_id"] == trials[1]["id"]
    # the budget is spent
    assert (await add(client, alice, campaign["id"], variant(8))).status_code == 409
    best_first = (
        await client.get(
            f"/api/v1/nas-campaigns/{campaign['id']}/trials?order_by=-validation_accuracy&limit=2",
            headers=alice.headers,
        )
    ).json()
    assert [t["trial_number"] for t in best_first["items"]] == [1, 2]
    rest = (
        await client.get(
            f"/api/v1/nas-campaigns/{campaign['id']}/trials?order_by=-validation_accuracy"
            f"&limit=2&cursor={best_first['next_cursor']}",
            headers=alice.headers,
        )
    ).json()
    assert [t["trial_number"] for t in rest["items"]] == [0] and rest["next_cursor"] is None


async def test_nas_campaigns_follow_the_ownership_rules(client, alice, bob, viewer) -> None:
    campaign = await new_campaign(client, alice)
    path = f"/api/v1/nas-campaigns/{campaign['id']}"
    assert (await client.get(path, headers=bob.headers)).status_code == 404
    assert (await add(client, bob, campaign["id"], ARCH)).status_code == 404
    assert (await client.get(f"{path}/trials", headers=viewer.headers)).status_code == 200
    assert (await add(client, viewer, campaign["id"], ARCH)).status_code == 403


async def test_deleting_the_dataset_of_a_campaign_unlinks_it(client, alice) -> None:
    dataset = (
        await client.post("/api/v1/datasets", json={"name": "pumps"}, headers=alice.headers)
    ).json()
    campaign = await client.post(
        "/api/v1/nas-campaigns",
        json={
            "name": "on-pumps",
            "search_algorithm": "random",
            "num_trials": 2,
            "dataset_id": dataset["id"],
        },
        headers=alice.headers,
    )
    assert campaign.json()["dataset_id"] == dataset["id"]
    deleted = await client.delete(f"/api/v1/datasets/{dataset['id']}", headers=alice.headers)
    assert deleted.status_code == 204
    after = await client.get(
        f"/api/v1/nas-campaigns/{campaign.json()['id']}", headers=alice.headers
    )
    assert after.json()["dataset_id"] is None


async def test_each_recorded_trial_is_announced_and_the_last_before_the_completion(
    client, db, alice
) -> None:
    campaign = await new_campaign(client, alice, num_trials=2)
    first = await add(client, alice, campaign["id"], variant(16), validation_accuracy=0.8)
    refused = await add(client, alice, campaign["id"], variant(16), validation_accuracy=0.9)
    assert refused.status_code == 409  # nothing recorded, nothing announced
    second = await add(
        client, alice, campaign["id"], variant(32), validation_accuracy=0.7, validation_loss=0.4
    )
    assert (first.status_code, second.status_code) == (201, 201)
    events = [e for e in await outbox(db) if e["type"].startswith("nas_")]
    assert [e["type"] for e in events] == [
        "nas_trial.completed",
        "nas_trial.completed",
        "nas_campaign.completed",
    ]
    one, two, done = (e["data"] for e in events)
    assert one["campaign_id"] == campaign["id"] and one["owner_id"] == str(alice.id)
    assert (one["trial_id"], one["trial_number"], one["validation_accuracy"]) == (
        first.json()["id"],
        0,
        0.8,
    )
    assert (one["is_best"], one["best_accuracy"], one["trials_completed"]) == (True, 0.8, 1)
    assert (one["num_trials"], one["campaign_status"]) == (2, "running")
    assert (two["trial_number"], two["validation_loss"], two["is_best"]) == (1, 0.4, False)
    assert (two["best_accuracy"], two["campaign_status"]) == (0.8, "completed")
    # one aggregate: the campaign's version orders its events
    sequences = [int(e["sequence"]) for e in events]
    assert sequences == sorted(sequences) and len(set(sequences)) == 3
    assert all(e["subject"] == campaign["id"] for e in events)
    assert done["best_accuracy"] == 0.8
