"""Stats over a time window against a crafted data set (exact percentiles, error rate,
confidence buckets), the same numbers from rollups and raw rows whatever the window's edges,
PSI against a hand-computed value, and the drift event once per cooldown."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from runyard.experiments.main import create_app
from runyard.experiments.predictions import histograms, service
from runyard.shared.testing import running_app
from services.experiments.tests.experiments_helpers import fetch, outbox
from services.experiments.tests.predictions.conftest import url


def hour_floor(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


async def log(client, who, version, rows) -> None:
    for i in range(0, len(rows), 5000):
        response = await client.post(
            url(version), json={"predictions": rows[i : i + 5000]}, headers=who.headers
        )
        assert response.status_code == 201, response.text


def crafted(base: datetime) -> list[dict]:
    """600 predictions over ~3 h from ``base``, 19 s apart: latencies 1..600 ms shuffled by a
    fixed rule, every 10th an error, every 7th without a confidence."""
    rows = []
    for i in range(600):
        rows.append(
            {
                "input": {"i": i},
                "latency_ms": float((i * 37) % 600 + 1),
                "confidence": None if i % 7 == 0 else ((i * 13) % 100) / 100,
                "time": (base + timedelta(seconds=19 * i, milliseconds=250)).isoformat(),
                **({"error": "boom"} if i % 10 == 0 else {}),
            }
        )
    return rows


def expected(rows: list[dict], start: datetime, end: datetime) -> dict:
    inside = [r for r in rows if start <= datetime.fromisoformat(r["time"]) < end]
    latency = np.array([r["latency_ms"] for r in inside])
    buckets = [0] * 10
    for r in inside:
        if r["confidence"] is not None:
            buckets[min(9, math.floor(r["confidence"] * 10))] += 1
    return {
        "count": len(inside),
        "errors": sum(1 for r in inside if "error" in r),
        "p": [float(np.percentile(latency, q, method="linear")) for q in (50, 95, 99)],
        "mean": float(latency.mean()),
        "buckets": buckets,
        "null": sum(1 for r in inside if r["confidence"] is None),
    }


async def test_stats_of_a_window_match_the_crafted_data(
    client, settings, alice, new_version
) -> None:
    version = await new_version(alice.id)
    base = hour_floor(datetime.now(UTC)) - timedelta(hours=6)
    rows = crafted(base)
    await log(client, alice, version, rows)

    # windows with ragged edges (raw rows), whole minutes and whole hours (rollups)
    windows = [
        (
            base + timedelta(minutes=10, seconds=30),
            base + timedelta(hours=2, minutes=5, seconds=15),
        ),
        (base + timedelta(seconds=5), base + timedelta(seconds=50)),
        (base + timedelta(minutes=3), base + timedelta(minutes=58)),
        (base - timedelta(hours=1), base + timedelta(hours=5)),
    ]
    for start, end in windows:
        want = expected(rows, start, end)
        response = await client.get(
            url(version, "/stats"),
            params={"from": start.isoformat(), "to": end.isoformat()},
            headers=alice.headers,
        )
        assert response.status_code == 200, response.text
        got = response.json()
        assert (got["count"], got["errors"]) == (want["count"], want["errors"]), (start, end)
        assert got["error_rate"] == pytest.approx(want["errors"] / want["count"])
        latency = got["latency_ms"]
        assert latency["exact"] is True
        assert [latency["p50"], latency["p95"], latency["p99"]] == pytest.approx(want["p"])
        assert latency["mean"] == pytest.approx(want["mean"])
        assert [b["count"] for b in got["confidence"]["buckets"]] == want["buckets"]
        assert got["confidence"]["null_count"] == want["null"]
        assert got["confidence"]["buckets"][9] == {
            "lower": 0.9,
            "upper": 1.0,
            "count": want["buckets"][9],
        }
    # the whole set: 1..600 ms exactly
    assert expected(rows, windows[3][0], windows[3][1])["p"] == pytest.approx(
        [300.5, 570.05, 594.01]
    )

    # above the exact limit: percentiles from the rollups' histograms, within 4.5 %
    approx_settings = settings.model_copy(update={"predictions_exact_percentiles_max": 0})
    async with running_app(create_app(approx_settings)) as other:
        start, end = windows[0]
        want = expected(rows, start, end)
        got = (
            await other.get(
                url(version, "/stats"),
                params={"from": start.isoformat(), "to": end.isoformat()},
                headers=alice.headers,
            )
        ).json()
    assert got["latency_ms"]["exact"] is False
    assert got["count"] == want["count"]
    for value, exact in zip(
        [got["latency_ms"]["p50"], got["latency_ms"]["p95"], got["latency_ms"]["p99"]],
        want["p"],
        strict=True,
    ):
        assert value == pytest.approx(exact, rel=0.045)

    empty = await client.get(
        url(version, "/stats"),
        params={
            "from": (base - timedelta(days=2)).isoformat(),
            "to": (base - timedelta(days=1)).isoformat(),
        },
        headers=alice.headers,
    )
    assert empty.json()["count"] == 0 and empty.json()["latency_ms"]["p50"] is None
    backwards = await client.get(
        url(version, "/stats"),
        params={"from": base.isoformat(), "to": (base - timedelta(hours=1)).isoformat()},
        headers=alice.headers,
    )
    assert backwards.status_code == 422


def test_psi_against_a_hand_computed_value() -> None:
    baseline = [0] * 8 + [50, 50]
    window = [0] * 5 + [25, 0, 0, 25, 50]
    # buckets 8 and 5 differ; empty proportions count as 1e-4
    by_hand = (0.25 - 0.5) * math.log(0.25 / 0.5) + (0.25 - 0.0001) * math.log(0.25 / 0.0001)
    assert histograms.psi(window, baseline) == pytest.approx(by_hand)
    assert by_hand == pytest.approx(2.12852, abs=1e-5)
    assert histograms.psi(baseline, baseline) == 0
    assert histograms.psi([0] * 10, baseline) is None


def drift_rows(start: datetime, confidences: list[float]) -> list[dict]:
    return [
        {
            "input": i,
            "latency_ms": 1.0,
            "confidence": c,
            "time": (start + timedelta(seconds=i)).isoformat(),
        }
        for i, c in enumerate(confidences)
    ]


async def test_drift_on_the_stats_and_one_event_per_cooldown(
    client, settings, sessionmaker, db, alice, new_version
) -> None:
    version = await new_version(alice.id)
    steady = await new_version(alice.id, name="steady")
    now = datetime.now(UTC).replace(microsecond=0)
    first_day = now - timedelta(days=3)
    recent = now - timedelta(minutes=30)
    # the first day: half 0.95, half 0.85; the last hour: a quarter moved down to 0.55
    await log(client, alice, version, drift_rows(first_day, [0.95] * 50 + [0.85] * 50))
    await log(client, alice, version, drift_rows(recent, [0.95] * 50 + [0.85] * 25 + [0.55] * 25))
    await log(client, alice, steady, drift_rows(first_day, [0.95] * 50 + [0.85] * 50))
    await log(client, alice, steady, drift_rows(recent, [0.85] * 50 + [0.95] * 50))
    by_hand = (0.25 - 0.5) * math.log(0.5) + (0.25 - 0.0001) * math.log(2500)

    stats = await client.get(
        url(version, "/stats"),
        params={"from": (now - timedelta(hours=1)).isoformat(), "to": now.isoformat()},
        headers=alice.headers,
    )
    drift = stats.json()["drift"]
    assert drift["psi"] == pytest.approx(by_hand)
    assert drift["drifted"] is True and drift["baseline_count"] == 100
    assert datetime.fromisoformat(drift["baseline_from"]) == first_day

    checks = settings.model_copy(
        update={"drift_window_s": 3600, "drift_min_predictions": 50, "drift_cooldown_s": 600}
    )

    async def check(at: datetime) -> int:
        async with sessionmaker() as session, session.begin():
            return await service.check_drift(session, now=at, settings=checks)

    assert await check(now) == 1
    assert await check(now + timedelta(seconds=60)) == 0  # within the cooldown
    assert await check(now + timedelta(seconds=700)) == 1  # after it, still drifted
    events = [e for e in await outbox(db) if e["type"] == "model_version.drift_detected"]
    assert len(events) == 2
    data = events[0]["data"]
    assert data["version_id"] == str(version["version_id"])
    assert (data["model_name"], data["model_version"], data["owner_id"]) == (
        "pump-cnn",
        1,
        str(alice.id),
    )
    assert data["psi"] == pytest.approx(by_hand)
    assert (data["window_count"], data["baseline_count"]) == (100, 100)
    assert events[0]["subject"] == str(version["model_id"])


async def test_concurrent_batches_add_up_in_the_rollups(client, db, alice, new_version) -> None:
    """Requests over the same minutes and hours at once (rows in opposite orders) all land; the
    rollups they add to hold every row once (no lost update, no deadlock)."""
    version = await new_version(alice.id)
    base = hour_floor(datetime.now(UTC)) - timedelta(hours=3)
    rows = [
        {
            "input": i,
            "latency_ms": 1.0 + i % 7,
            "confidence": 0.5,
            "time": (base + timedelta(seconds=37 * i)).isoformat(),
        }
        for i in range(200)
    ]
    bodies = [rows, rows[::-1], rows[50:] + rows[:50], rows[::-1]]
    answers = await asyncio.gather(
        *(client.post(url(version), json={"predictions": b}, headers=alice.headers) for b in bodies)
    )
    assert [a.status_code for a in answers] == [201] * 4
    sums = await fetch(
        db,
        "SELECT grain, sum(n) AS n, sum(confidence[6]) AS c FROM experiments.prediction_rollups "
        "WHERE version_id = $1 GROUP BY grain ORDER BY grain",
        version["version_id"],
    )
    assert [(r["grain"], r["n"], r["c"]) for r in sums] == [(60, 800, 800), (3600, 800, 800)]
    stats = await client.get(
        url(version, "/stats"),
        params={"from": base.isoformat(), "to": (base + timedelta(hours=3)).isoformat()},
        headers=alice.headers,
    )
    assert stats.json()["count"] == 800
