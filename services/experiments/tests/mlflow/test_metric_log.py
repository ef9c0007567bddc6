"""MLflow's metric log: every value kept (several per step, negative steps, NaN and infinities),
the latest value by (step, timestamp, value), history order and MLflow 3's interval sampling."""

from __future__ import annotations

import math
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from runyard.experiments.mlflow import convert, metric_log
from runyard.experiments.mlflow.metric_log import Logged
from runyard.shared.db import create_engine, create_sessionmaker
from services.experiments.tests.experiments_helpers import new_experiment


@pytest.fixture
async def sessionmaker(settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(settings.database_url, pool_size=1)
    yield create_sessionmaker(engine, schema="experiments")
    await engine.dispose()


async def run_of(client, alice) -> uuid.UUID:
    return uuid.UUID((await new_experiment(client, alice))["id"])


async def log(sessionmaker, run: uuid.UUID, *metrics: Logged) -> None:
    async with sessionmaker() as session, session.begin():
        await metric_log.record(session, run, list(metrics))


async def test_every_value_is_kept_and_history_is_in_timestamp_step_value_order(
    client, alice, sessionmaker
) -> None:
    run = await run_of(client, alice)
    values = [
        Logged("loss", 10.0, 1, 2),
        Logged("loss", 11.0, 1, 3),
        Logged("loss", 12.0, 1, 3),
        Logged("loss", 12.0, 2, 3),
        Logged("loss", -1.0, 0, -2),
        Logged("loss", math.nan, 5, 4),
    ]
    await log(sessionmaker, run, *values[:3])
    await log(sessionmaker, run, *values[3:], values[0])  # an identical value again: kept once
    async with sessionmaker() as session:
        found = await metric_log.history(session, run, "loss")
        page = await metric_log.history(session, run, "loss", limit=2, offset=1)
        other = await metric_log.history(session, run, "acc")
    assert [(m.value, m.timestamp, m.step) for m in found[:5]] == [
        (-1.0, 0, -2),
        (10.0, 1, 2),
        (11.0, 1, 3),
        (12.0, 1, 3),
        (12.0, 2, 3),
    ]
    assert math.isnan(found[5].value)
    assert [m.value for m in page] == [10.0, 11.0]
    assert other == []


async def test_latest_is_the_greatest_step_timestamp_value_and_nan_never_beats_a_tie(
    client, alice, sessionmaker
) -> None:
    run, other = await run_of(client, alice), await run_of(client, alice)
    await log(sessionmaker, run, Logged("loss", 3.0, 100, 5), Logged("loss", 9.0, 50, 1))
    await log(sessionmaker, run, Logged("loss", 1.0, 10, 4))  # an earlier step: not the latest
    await log(sessionmaker, run, Logged("loss", math.nan, 100, 5))  # a tie, NaN: not the latest
    await log(sessionmaker, run, Logged("acc", math.inf, 1, 0), Logged("acc", 0.5, 1, 0))
    await log(sessionmaker, other, Logged("loss", 7.0, 1, 0))
    async with sessionmaker() as session:
        latest = await metric_log.latest(session, [run, other])
    assert {m.key: (m.value, m.step) for m in latest[run]} == {
        "acc": (math.inf, 0),
        "loss": (3.0, 5),
    }
    assert [m.value for m in latest[other]] == [7.0]
    assert convert.double(latest[run][0].value) == "Infinity"


async def test_interval_sampling_keeps_first_of_each_bucket_and_the_last_value(
    client, alice, sessionmaker
) -> None:
    run = await run_of(client, alice)
    await log(sessionmaker, run, *(Logged("m", 10.0, 1, i) for i in range(10)))
    async with sessionmaker() as session:
        five = await metric_log.sampled(
            session, run, "m", max_results=5, start_step=None, end_step=None
        )
        window = await metric_log.sampled(
            session, run, "m", max_results=5, start_step=0, end_step=4
        )
        all_ = await metric_log.sampled(
            session, run, "m", max_results=100, start_step=None, end_step=None
        )
    assert [m.step for m in five] == [0, 2, 4, 6, 9]
    assert [m.step for m in window] == [0, 1, 2, 3, 4]
    assert [m.step for m in all_] == list(range(10))


async def test_runs_logged_through_runyard_read_as_one_value_per_epoch(
    client, alice, sessionmaker
) -> None:
    run = await run_of(client, alice)
    runs = [{"epoch": e, "val_loss": 1.0 / (e + 1), "metrics": {"f1": e / 10}} for e in range(7)]
    response = await client.post(
        f"/api/v1/experiments/{run}/runs", json={"runs": runs}, headers=alice.headers
    )
    assert response.status_code in (200, 201), response.text
    async with sessionmaker() as session:
        loss = await metric_log.history(session, run, "val_loss")
        f1 = await metric_log.sampled(
            session, run, "f1", max_results=3, start_step=None, end_step=None
        )
    assert [(m.step, m.value) for m in loss] == [(e, 1.0 / (e + 1)) for e in range(7)]
    assert [m.step for m in f1] == [0, 3, 6]


def test_last_per_step_is_runyards_epoch_view() -> None:
    epochs = metric_log.last_per_step(
        [
            Logged("loss", 1.0, 5, 0),
            Logged("loss", 2.0, 9, 0),
            Logged("loss", 3.0, 7, 0),
            Logged("acc", math.nan, 1, 0),
            Logged("loss", 4.0, 1, -1),
        ]
    )
    assert {step: {k: m.value for k, m in row.items()} for step, row in epochs.items()} == {
        0: {"loss": 2.0}
    }
