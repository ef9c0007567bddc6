"""The downsampled history read and the ``experiment.epochs_logged`` event of a logged batch."""

from __future__ import annotations

from services.experiments.tests.experiments_helpers import act, new_experiment, outbox


def history_url(experiment: dict) -> str:
    return f"/api/v1/experiments/{experiment['id']}/history"


async def log(client, who, experiment: dict, runs: list[dict]) -> None:
    response = await client.post(
        f"/api/v1/experiments/{experiment['id']}/runs", json={"runs": runs}, headers=who.headers
    )
    assert response.status_code in (200, 201), response.text


async def test_each_bucket_keeps_its_min_max_and_last_value_so_a_spike_survives(
    client, alice
) -> None:
    experiment = await new_experiment(client, alice)
    runs = [{"epoch": e, "val_loss": 1.0, "metrics": {"grad_norm": float(e)}} for e in range(100)]
    runs[37]["val_loss"] = 50.0  # one spike, inside the fourth bucket
    await log(client, alice, experiment, runs)

    response = await client.get(
        history_url(experiment),
        params={"buckets": 10, "metric": ["val_loss", "grad_norm"]},
        headers=alice.headers,
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["points"] == 100
    assert (body["from_epoch"], body["to_epoch"]) == (0, 99)
    assert body["epoch"] == [9, 19, 29, 39, 49, 59, 69, 79, 89, 99]
    assert len(body["time"]) == 10
    loss = body["series"]["val_loss"]
    assert loss["max"] == [1.0, 1.0, 1.0, 50.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    assert loss["min"] == [1.0] * 10
    assert loss["last"] == [1.0] * 10
    grad = body["series"]["grad_norm"]
    assert grad["min"][3] == 30.0 and grad["max"][3] == 39.0 and grad["last"][3] == 39.0


async def test_a_narrower_range_returns_the_finer_points_of_that_range_only(client, alice) -> None:
    experiment = await new_experiment(client, alice)
    await log(client, alice, experiment, [{"epoch": e, "val_loss": e / 10} for e in range(200)])

    response = await client.get(
        history_url(experiment),
        params={"buckets": 1000, "from_epoch": 50, "to_epoch": 59, "metric": "val_loss"},
        headers=alice.headers,
    )

    body = response.json()
    assert body["points"] == 10
    assert body["epoch"] == list(range(50, 60))
    assert body["series"]["val_loss"]["last"] == [e / 10 for e in range(50, 60)]


async def test_without_metric_names_the_latest_epochs_numeric_metrics_are_returned(
    client, alice
) -> None:
    experiment = await new_experiment(client, alice)
    await log(
        client,
        alice,
        experiment,
        [{"epoch": 0, "train_loss": 0.9, "val_loss": 1.0, "metrics": {"f1": 0.4}}],
    )

    body = (await client.get(history_url(experiment), headers=alice.headers)).json()

    assert sorted(body["series"]) == ["f1", "train_loss", "val_loss"]
    assert body["series"]["f1"]["last"] == [0.4]


async def test_a_metric_missing_from_a_bucket_is_null_there(client, alice) -> None:
    experiment = await new_experiment(client, alice)
    runs = [{"epoch": e, "train_loss": 1.0} for e in range(4)]
    runs[3]["val_loss"] = 0.5
    await log(client, alice, experiment, runs)

    body = (
        await client.get(
            history_url(experiment),
            params={"buckets": 4, "metric": ["val_loss"]},
            headers=alice.headers,
        )
    ).json()

    assert body["series"]["val_loss"] == {
        "min": [None, None, None, 0.5],
        "max": [None, None, None, 0.5],
        "last": [None, None, None, 0.5],
    }


async def test_an_experiment_without_runs_has_an_empty_history(client, alice) -> None:
    experiment = await new_experiment(client, alice)

    body = (await client.get(history_url(experiment), headers=alice.headers)).json()

    assert (body["points"], body["epoch"], body["series"]) == (0, [], {})


async def test_another_users_history_is_a_404(client, alice, bob) -> None:
    experiment = await new_experiment(client, alice)
    await log(client, alice, experiment, [{"epoch": 0, "val_loss": 1.0}])

    response = await client.get(history_url(experiment), headers=bob.headers)

    assert response.status_code == 404
    assert "val_loss" not in response.text


async def test_bad_bucket_counts_and_ranges_are_422_problems(client, alice) -> None:
    experiment = await new_experiment(client, alice)
    for params in ({"buckets": 0}, {"buckets": 10_001}, {"from_epoch": -1}, {"metric": "a`b"}):
        response = await client.get(history_url(experiment), params=params, headers=alice.headers)
        assert response.status_code == 422, params
        assert response.headers["content-type"].startswith("application/problem+json")


async def test_each_accepted_batch_emits_one_epochs_logged_event_with_its_range_and_latest_values(
    client, db, alice
) -> None:
    experiment = await new_experiment(client, alice)
    runs = [{"epoch": e, "val_loss": 1.0 / (e + 1), "metrics": {"f1": e / 10}} for e in range(3, 6)]

    await log(client, alice, experiment, runs)
    await log(client, alice, experiment, runs)  # a retry changes nothing: no event

    logged = [e for e in await outbox(db) if e["type"] == "experiment.epochs_logged"]
    assert len(logged) == 1
    event = logged[0]
    assert event["subject"] == experiment["id"]
    data = event["data"]
    assert data["owner_id"] == str(alice.id)
    assert (data["first_epoch"], data["last_epoch"]) == (3, 5)
    assert (data["epochs_written"], data["epochs_inserted"], data["total_epochs"]) == (3, 3, 3)
    assert data["latest_metrics"] == {"val_loss": 1.0 / 6, "f1": 0.5}
    assert data["status"] == "running"
    assert data["best_epoch"] == 5


async def test_a_refused_batch_emits_no_epochs_logged_event(client, db, alice) -> None:
    experiment = await new_experiment(client, alice)
    assert (await act(client, alice, experiment["id"], "cancel")).status_code == 200

    await client.post(
        f"/api/v1/experiments/{experiment['id']}/runs",
        json={"epoch": 0, "val_loss": 1.0},
        headers=alice.headers,
    )

    assert "experiment.epochs_logged" not in [e["type"] for e in await outbox(db)]
