"""Training runs: batches in one statement, idempotent per epoch, bookkeeping on the experiment."""

from __future__ import annotations

import asyncio

import pytest

from services.experiments.tests.experiments_helpers import act, event_types, fetch, new_experiment


def epochs(first: int, last: int, **extra: float) -> list[dict[str, float | int]]:
    return [
        {
            "epoch": e,
            "train_loss": 1.0 / (e + 1),
            "val_loss": 1.2 / (e + 1) + (0.3 if e == 5 else 0.0),
            "train_accuracy": 0.5 + e / 100,
            "val_accuracy": 0.45 + e / 100,
            **extra,
        }
        for e in range(first, last + 1)
    ]


def runs_url(experiment: dict) -> str:
    return f"/api/v1/experiments/{experiment['id']}/runs"


async def test_a_retried_batch_never_duplicates_and_keeps_totals_right(client, db, alice) -> None:
    experiment = await new_experiment(client, alice)
    batch = {"runs": epochs(0, 9)}

    first = await client.post(runs_url(experiment), json=batch, headers=alice.headers)
    retry = await client.post(runs_url(experiment), json=batch, headers=alice.headers)

    assert first.status_code == 201, first.text
    assert (first.json()["inserted"], first.json()["unchanged"]) == (10, 0)
    assert retry.status_code == 200
    assert (retry.json()["inserted"], retry.json()["updated"], retry.json()["unchanged"]) == (
        0,
        0,
        10,
    )
    rows = await fetch(db, "SELECT count(*) AS n FROM experiments.training_runs")
    assert rows[0]["n"] == 10
    stored = (
        await client.get(f"/api/v1/experiments/{experiment['id']}", headers=alice.headers)
    ).json()
    assert stored["total_epochs"] == 10
    assert stored["best_epoch"] == 9  # lowest val_loss
    assert stored["metrics"]["val_loss"] == stored["best_value"] == 1.2 / 10
    assert stored["metrics"]["val_accuracy"] == 0.54  # the latest epoch's


async def test_an_overlapping_batch_adds_the_new_epochs_and_replaces_changed_ones(
    client, alice
) -> None:
    experiment = await new_experiment(client, alice)
    await client.post(runs_url(experiment), json={"runs": epochs(0, 4)}, headers=alice.headers)

    changed = epochs(3, 6)
    changed[0]["val_loss"] = 9.0  # epoch 3 re-run from a checkpoint, worse
    result = (
        await client.post(runs_url(experiment), json={"runs": changed}, headers=alice.headers)
    ).json()

    assert (result["inserted"], result["updated"], result["unchanged"]) == (2, 1, 1)
    assert result["total_epochs"] == 7
    runs = (await client.get(runs_url(experiment), headers=alice.headers)).json()["items"]
    assert [r["epoch"] for r in runs] == list(range(7))
    assert runs[3]["val_loss"] == 9.0


async def test_overwriting_the_best_epoch_recomputes_the_best(client, alice) -> None:
    experiment = await new_experiment(client, alice, best_metric="val_accuracy")
    assert experiment["best_mode"] == "max"
    await client.post(runs_url(experiment), json={"runs": epochs(0, 4)}, headers=alice.headers)
    assert (
        await client.get(f"/api/v1/experiments/{experiment['id']}", headers=alice.headers)
    ).json()["best_epoch"] == 4

    worse = epochs(4, 4)
    worse[0]["val_accuracy"] = 0.1
    result = (await client.post(runs_url(experiment), json=worse[0], headers=alice.headers)).json()

    assert (result["best_epoch"], result["best_value"]) == (3, 0.48)


async def test_one_epoch_per_request_with_extra_metrics(client, alice) -> None:
    experiment = await new_experiment(client, alice, best_metric="f1_macro")
    for epoch, f1 in enumerate([0.5, 0.7, 0.6]):
        response = await client.post(
            runs_url(experiment),
            json={"epoch": epoch, "val_loss": 0.3, "metrics": {"f1_macro": f1}},
            headers=alice.headers,
        )
        assert response.status_code == 201
    result = response.json()
    assert (result["best_epoch"], result["best_value"], result["total_epochs"]) == (1, 0.7, 3)
    assert result["metrics"] == {"val_loss": 0.3, "f1_macro": 0.6}


@pytest.mark.slow
async def test_concurrent_identical_batches_store_each_epoch_once(client, db, alice) -> None:
    experiment = await new_experiment(client, alice)
    batch = {"runs": epochs(0, 49)}
    responses = await asyncio.gather(
        *(client.post(runs_url(experiment), json=batch, headers=alice.headers) for _ in range(4))
    )
    assert sorted(r.json()["inserted"] for r in responses) == [0, 0, 0, 50]
    stored = (
        await client.get(f"/api/v1/experiments/{experiment['id']}", headers=alice.headers)
    ).json()
    assert stored["total_epochs"] == 50


async def test_logging_to_a_pending_experiment_starts_it(client, db, alice) -> None:
    experiment = await new_experiment(client, alice)
    result = await client.post(runs_url(experiment), json={"epoch": 0}, headers=alice.headers)
    assert result.json()["status"] == "running"
    assert await event_types(db) == [
        "experiment.created",
        "experiment.started",
        "experiment.epochs_logged",
    ]


async def test_logging_to_a_finished_experiment_is_409(client, alice) -> None:
    for action, status in (("complete", "completed"), ("fail", "failed"), ("cancel", "cancelled")):
        experiment = await new_experiment(client, alice)
        await act(client, alice, experiment["id"], action)
        response = await client.post(runs_url(experiment), json={"epoch": 0}, headers=alice.headers)
        assert response.status_code == 409
        assert response.json()["current_status"] == status


async def test_batch_limits_and_bad_input_are_rejected_whole(client, db, alice) -> None:
    experiment = await new_experiment(client, alice)
    too_many = await client.post(
        runs_url(experiment),
        json={"runs": [{"epoch": e} for e in range(1001)]},
        headers=alice.headers,
    )
    repeated = await client.post(
        runs_url(experiment), json={"runs": [{"epoch": 1}, {"epoch": 1}]}, headers=alice.headers
    )
    not_finite = await client.post(
        runs_url(experiment),
        content=b'{"epoch": 1, "val_loss": NaN}',
        headers={**alice.headers, "content-type": "application/json"},
    )
    negative = await client.post(runs_url(experiment), json={"epoch": -1}, headers=alice.headers)
    assert [r.status_code for r in (too_many, repeated, not_finite, negative)] == [422] * 4
    assert (await fetch(db, "SELECT count(*) AS n FROM experiments.training_runs"))[0]["n"] == 0


async def test_a_full_batch_of_1000_epochs_is_one_request(client, alice) -> None:
    experiment = await new_experiment(client, alice)
    response = await client.post(
        runs_url(experiment), json={"runs": epochs(0, 999)}, headers=alice.headers
    )
    assert response.status_code == 201
    assert response.json()["inserted"] == 1000


async def test_history_pages_through_every_epoch_in_order(client, alice) -> None:
    experiment = await new_experiment(client, alice)
    await client.post(runs_url(experiment), json={"runs": epochs(0, 24)}, headers=alice.headers)
    seen: list[int] = []
    cursor = None
    while True:
        params = {"limit": 10, **({"cursor": cursor} if cursor else {})}
        page = (await client.get(runs_url(experiment), params=params, headers=alice.headers)).json()
        seen += [r["epoch"] for r in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(range(25))
    garbage = await client.get(
        runs_url(experiment), params={"cursor": "xyz"}, headers=alice.headers
    )
    assert garbage.status_code == 400
