"""The block summaries behind the downsampled history (``history_blocks``): kept true by the
epoch write path whatever order epochs arrive in, re-sent or rewritten, filled by migration 0006
from existing runs, and giving the same answer as aggregating the runs."""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from runyard.experiments.tracking.repository import history
from runyard.shared.db import create_engine, create_sessionmaker
from runyard.shared.testing.migrations import round_trip
from services.experiments.tests.experiments_helpers import (
    expected_blocks,
    new_experiment,
    stored_blocks,
)


@pytest.fixture
async def sessionmaker(settings) -> AsyncIterator[Any]:
    engine = create_engine(settings.database_url, pool_size=2)
    yield create_sessionmaker(engine, schema="experiments")
    await engine.dispose()


async def log(client, who, experiment: dict, runs: list[dict]) -> dict:
    response = await client.post(
        f"/api/v1/experiments/{experiment['id']}/runs", json={"runs": runs}, headers=who.headers
    )
    assert response.status_code in (200, 201), response.text
    body: dict = response.json()
    return body


def random_run(rng: random.Random, epoch: int) -> dict:
    """val_loss mostly there, train_loss sometimes, f1 (a metric of ``metrics``) sometimes;
    few distinct values, so ties for min and max happen."""
    run: dict[str, Any] = {"epoch": epoch, "metrics": {}}
    if rng.random() < 0.9:
        run["val_loss"] = rng.choice([0.5, 1.0, 1.5, rng.uniform(-5, 5)])
    if rng.random() < 0.5:
        run["train_loss"] = rng.uniform(0, 2)
    if rng.random() < 0.3:
        run["metrics"]["f1"] = rng.choice([0.1, 0.9, rng.random()])
    if rng.random() < 0.05:  # a column's name under metrics: the column is the metric
        run["metrics"]["learning_rate"] = 99.0
    return run


async def read(sessionmaker, experiment_id: str, **kwargs: Any) -> history.History:
    async with sessionmaker() as session:
        return await history.downsampled_history(session, uuid.UUID(experiment_id), **kwargs)


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
@pytest.mark.slow
async def test_the_summary_stays_true_and_reads_the_same_as_the_runs_under_random_writes(
    client, db, alice, sessionmaker, seed
) -> None:
    rng = random.Random(seed)
    experiment = await new_experiment(client, alice)
    epochs = rng.sample(range(6000), 1200)  # sparse, in no order
    runs = {epoch: random_run(rng, epoch) for epoch in epochs}
    pending = list(epochs)
    sent: list[int] = []
    while pending:
        batch = [pending.pop() for _ in range(min(len(pending), rng.randint(1, 60)))]
        resent = rng.sample(sent, min(len(sent), rng.randint(0, 5)))  # a retry: no change
        rewritten = rng.sample(sent, min(len(sent), rng.randint(0, 3)))  # a re-run
        for epoch in rewritten:
            runs[epoch] = random_run(rng, epoch)
        chosen = sorted(set(batch) | set(resent) | set(rewritten), key=lambda _: rng.random())
        await log(client, alice, experiment, [runs[e] for e in chosen])
        sent += batch

    assert await stored_blocks(db, experiment["id"]) == await expected_blocks(db, experiment["id"])

    metrics = ["val_loss", "train_loss", "f1", "learning_rate", "never_logged"]
    summarised = 0
    for _ in range(25):
        low, high = sorted(rng.sample(range(-10, 6100), 2))
        query: dict[str, Any] = {
            "metrics": metrics,
            "buckets": rng.choice([1, 2, 3, 7, 10, 31, 64, 100, 250]),
            "from_epoch": rng.choice([None, max(low, 0)]),
            "to_epoch": rng.choice([None, high]),
        }
        from_summary = await read(sessionmaker, experiment["id"], **query)
        from_runs = await read(sessionmaker, experiment["id"], use_summary=False, **query)
        assert from_summary == from_runs, query
        if from_summary.points >= 16 * query["buckets"]:
            summarised += 1
    assert summarised >= 5  # most reads went through the blocks


async def test_rewriting_the_epoch_that_held_a_blocks_max_or_its_only_value_corrects_it(
    client, db, alice, sessionmaker
) -> None:
    experiment = await new_experiment(client, alice)
    runs = [{"epoch": e, "val_loss": 1.0} for e in range(200)]
    runs[50] = {"epoch": 50, "val_loss": 9.0, "metrics": {"f1": 0.3}}
    await log(client, alice, experiment, runs)

    # a re-run from a checkpoint: epoch 50 again, lower, without f1
    result = await log(client, alice, experiment, [{"epoch": 50, "val_loss": 2.0}])

    assert result["updated"] == 1
    found = await read(
        sessionmaker,
        experiment["id"],
        metrics=["val_loss", "f1"],
        buckets=2,
        from_epoch=None,
        to_epoch=None,
    )
    assert found.epoch == [127, 199]  # two buckets of 64-epoch blocks: [0, 128) and the rest
    assert found.series["val_loss"].max == [2.0, 1.0]
    assert found.series["f1"].max == [None, None]
    assert await stored_blocks(db, experiment["id"]) == await expected_blocks(db, experiment["id"])


async def test_the_http_read_of_a_long_range_uses_block_aligned_buckets(
    client, alice, sessionmaker
) -> None:
    experiment = await new_experiment(client, alice)
    runs = [{"epoch": e, "val_loss": float(e % 97)} for e in range(1, 1001)]
    await log(client, alice, experiment, runs)

    response = await client.get(
        f"/api/v1/experiments/{experiment['id']}/history",
        params={"buckets": 10, "metric": "val_loss"},
        headers=alice.headers,
    )

    body = response.json()
    # 100 epochs a bucket: boundaries on multiples of 64, each bucket's last epoch just below
    assert body["epoch"] == [127, 191, 319, 383, 511, 575, 703, 831, 895, 1000]
    assert body["points"] == 1000
    assert body["series"]["val_loss"]["max"][0] == 96.0
    exact = await read(
        sessionmaker,
        experiment["id"],
        metrics=["val_loss"],
        buckets=10,
        from_epoch=None,
        to_epoch=None,
        use_summary=False,
    )
    assert body["series"]["val_loss"]["min"] == exact.series["val_loss"].min
    assert body["series"]["val_loss"]["last"] == exact.series["val_loss"].last


async def test_migration_0006_fills_the_summary_of_existing_runs(client, db, alice) -> None:
    experiment = await new_experiment(client, alice)
    rng = random.Random(7)
    await log(client, alice, experiment, [random_run(rng, e) for e in range(0, 3000, 3)])
    before = await stored_blocks(db, experiment["id"])

    await round_trip("runyard.experiments", db, down_to="0005")

    assert await stored_blocks(db, experiment["id"]) == before
    assert before == await expected_blocks(db, experiment["id"])


async def test_a_deleted_experiment_takes_its_summary_with_it(client, db, alice) -> None:
    experiment = await new_experiment(client, alice)
    await log(client, alice, experiment, [{"epoch": e, "val_loss": 1.0} for e in range(40)])
    assert await stored_blocks(db, experiment["id"])

    response = await client.delete(f"/api/v1/experiments/{experiment['id']}", headers=alice.headers)

    assert response.status_code == 204, response.text
    assert await stored_blocks(db, experiment["id"]) == {}
