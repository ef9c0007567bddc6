"""The stats series: per bucket count, errors and latency percentiles from the rollups, in one
read, against a crafted data set; hour and minute grains; the window's edges rounded out;
refusals naming ``interval``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from runyard.experiments.predictions import histograms
from services.experiments.tests.predictions.conftest import url
from services.experiments.tests.predictions.test_stats import crafted, hour_floor, log


def bucket_expectation(rows: list[dict], start: datetime, end: datetime) -> dict:
    inside = [r for r in rows if start <= datetime.fromisoformat(r["time"]) < end]
    latency = np.array([r["latency_ms"] for r in inside], dtype=np.float64)
    counts = np.bincount(
        histograms.latency_buckets(latency), minlength=histograms.LATENCY_BUCKETS
    ).tolist()
    return {
        "count": len(inside),
        "errors": sum(1 for r in inside if "error" in r),
        "hist": [histograms.percentile_from_histogram(counts, q) for q in (0.5, 0.95, 0.99)],
        "exact": [float(np.percentile(latency, q)) for q in (50, 95, 99)] if inside else None,
        "mean": float(latency.mean()) if inside else None,
    }


async def series(client, who, version, **params):
    return await client.get(url(version, "/stats/series"), params=params, headers=who.headers)


@pytest.mark.parametrize(("interval", "grain"), [(1800, 60), (3600, 3600), (7200, 3600), (300, 60)])
async def test_buckets_match_the_crafted_data(
    client, alice, new_version, interval: int, grain: int
) -> None:
    version = await new_version(alice.id)
    base = hour_floor(datetime.now(UTC)) - timedelta(hours=6)
    rows = crafted(base)  # 600 predictions over ~3 h 10 min from base
    await log(client, alice, version, rows)
    # ragged edges: rounded out to the grain
    start, end = base - timedelta(minutes=59, seconds=30), base + timedelta(hours=4, seconds=1)
    response = await series(
        client,
        alice,
        version,
        **{"from": start.isoformat(), "to": end.isoformat()},
        interval=interval,
    )
    assert response.status_code == 200, response.text
    got = response.json()
    first = start.replace(second=0) if grain == 60 else hour_floor(start)
    assert got["grain"] == grain and got["interval"] == interval
    assert datetime.fromisoformat(got["from"]) == first
    buckets = got["buckets"]
    assert datetime.fromisoformat(got["to"]) == first + timedelta(seconds=interval * len(buckets))
    assert datetime.fromisoformat(got["to"]) >= end
    assert sum(b["count"] for b in buckets) == 600
    assert sum(b["errors"] for b in buckets) == 60
    for i, bucket in enumerate(buckets):
        b0 = first + timedelta(seconds=interval * i)
        assert datetime.fromisoformat(bucket["start"]) == b0
        assert datetime.fromisoformat(bucket["end"]) == b0 + timedelta(seconds=interval)
        want = bucket_expectation(rows, b0, b0 + timedelta(seconds=interval))
        assert (bucket["count"], bucket["errors"]) == (want["count"], want["errors"]), b0
        latency = bucket["latency_ms"]
        if not want["count"]:
            assert bucket["error_rate"] is None
            assert latency == {"p50": None, "p95": None, "p99": None, "mean": None}
            continue
        assert bucket["error_rate"] == pytest.approx(want["errors"] / want["count"])
        assert latency["mean"] == pytest.approx(want["mean"])
        # what the histogram of these rows gives, and near the exact percentiles
        assert [latency["p50"], latency["p95"], latency["p99"]] == pytest.approx(want["hist"])
        if want["count"] >= 50:
            assert latency["p50"] == pytest.approx(want["exact"][0], rel=0.1)


async def test_default_window_refusals_and_access(client, alice, bob, new_version) -> None:
    version = await new_version(alice.id)
    base = datetime.now(UTC) - timedelta(minutes=30)
    await log(client, alice, version, crafted(base)[:50])
    got = (await series(client, alice, version)).json()
    # the last 24 h in hours: 24 or 25 buckets (the edges rounded out), all 50 in them
    assert got["interval"] == 3600 and len(got["buckets"]) in (24, 25)
    assert sum(b["count"] for b in got["buckets"]) == 50
    for params in ({"interval": 90}, {"interval": 60, "from": "2026-01-01T00:00:00Z"}):
        refused = await series(client, alice, version, **params)
        assert refused.status_code == 422, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["errors"][0]["loc"] == ["query", "interval"]
    assert (await series(client, bob, version)).status_code == 404
