"""Admin endpoints (request logs, metric summaries, audit trail) and the metrics rollup."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from runyard.gateway.workers import rollup_once
from runyard.shared.db import create_engine

PROBLEM_JSON = "application/problem+json"


def bearer(signing_key, **claims) -> dict[str, str]:
    return {"Authorization": f"Bearer {signing_key.token(**claims)}"}


def percentile(values: list[float], p: float) -> float:
    """PostgreSQL's percentile_cont: linear interpolation between closest ranks."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * p
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@pytest.fixture
async def engine(db):
    engine = create_engine(db.url)
    yield engine
    await engine.dispose()


async def insert_log(conn, *, at: datetime, route: str, status: int, ms: float) -> None:
    await conn.execute(
        "INSERT INTO gateway.api_request_logs (request_id, request_time, method, endpoint, route,"
        " status_code, response_time_ms, request_size_bytes, response_size_bytes)"
        " VALUES ($1, $2, 'GET', $3, $3, $4, $5, 0, 0)",
        str(uuid.uuid4()),
        at,
        route,
        status,
        ms,
    )


async def summaries(conn, kind: str) -> dict[tuple, dict]:
    records = await conn.fetch(
        "SELECT * FROM gateway.api_metrics_summary WHERE aggregation_type = $1", kind
    )
    return {(r["period_start"], r["method"], r["endpoint"]): dict(r) for r in records}


async def test_rollup_summarises_each_minute_and_hour_per_endpoint_with_percentiles(
    db_conn, engine
) -> None:
    hour = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
    first, second = hour + timedelta(minutes=5), hour + timedelta(minutes=6)
    latencies = [float(ms) for ms in range(1, 21)]  # 20 requests in the first minute
    for i, ms in enumerate(latencies):
        status = 500 if i % 10 == 0 else (404 if i % 5 == 0 else 200)
        await insert_log(
            db_conn, at=first + timedelta(seconds=i), route="/api/v1/x", status=status, ms=ms
        )
    await insert_log(db_conn, at=second, route="/api/v1/y", status=201, ms=7.0)
    written = await rollup_once(engine, now=hour + timedelta(minutes=30))
    assert written == {"minute": 4, "hour": 3}  # (x, *) + (y, *); (x, y, *) in the hour
    minutes = await summaries(db_conn, "minute")
    x = minutes[(first, "GET", "/api/v1/x")]
    assert (x["total_requests"], x["failed_requests"], x["server_errors"]) == (20, 4, 2)
    assert x["successful_requests"] == 16
    assert x["error_rate"] == pytest.approx(0.2)
    assert x["requests_per_second"] == pytest.approx(20 / 60)
    assert x["period_end"] == first + timedelta(minutes=1)
    assert x["avg_response_time_ms"] == pytest.approx(10.5)
    for p, column in ((0.5, "p50"), (0.95, "p95"), (0.99, "p99")):
        assert x[f"{column}_response_time_ms"] == pytest.approx(percentile(latencies, p))
    assert minutes[(first, "*", "*")]["total_requests"] == 20
    assert minutes[(second, "*", "*")]["total_requests"] == 1
    hours = await summaries(db_conn, "hour")
    everything = hours[(hour, "*", "*")]
    assert everything["total_requests"] == 21
    assert everything["requests_per_second"] == pytest.approx(21 / 3600)
    assert everything["p50_response_time_ms"] == pytest.approx(percentile([*latencies, 7.0], 0.5))


async def test_rollup_is_idempotent_and_picks_up_late_rows(db_conn, engine) -> None:
    minute = datetime(2026, 11, 22, 11, 3, tzinfo=UTC)
    await insert_log(db_conn, at=minute, route="/api/v1/x", status=200, ms=5.0)
    now = minute + timedelta(seconds=70)
    await rollup_once(engine, now=now)
    once = await summaries(db_conn, "minute")
    await rollup_once(engine, now=now)
    twice = await summaries(db_conn, "minute")
    assert {k: v["total_requests"] for k, v in once.items()} == {
        k: v["total_requests"] for k, v in twice.items()
    }
    assert {v["id"] for v in once.values()} == {v["id"] for v in twice.values()}
    await insert_log(
        db_conn, at=minute + timedelta(seconds=30), route="/api/v1/x", status=200, ms=9.0
    )
    await rollup_once(engine, now=now + timedelta(seconds=15))
    late = await summaries(db_conn, "minute")
    assert late[(minute, "*", "*")]["total_requests"] == 2
    assert late[(minute, "*", "*")]["p50_response_time_ms"] == pytest.approx(7.0)


async def test_admin_endpoints_refuse_non_admins(client, signing_key) -> None:
    for path in ("request-logs", "metrics", "audit-log"):
        anonymous = await client.get(f"/api/v1/admin/{path}")
        user = await client.get(f"/api/v1/admin/{path}", headers=bearer(signing_key, role="user"))
        assert anonymous.status_code == 401
        assert user.status_code == 403
        assert user.headers["content-type"] == PROBLEM_JSON


async def test_request_logs_are_paged_with_a_cursor_and_filtered(
    client, signing_key, eventually, db_conn
) -> None:
    user = bearer(signing_key, role="user")
    for i in range(3):
        await client.get(f"/api/v1/experiments/{i}", headers=user)
    await client.get("/api/v1/datasets", headers=user)
    await eventually(lambda: db_conn.fetchval("SELECT count(*) = 4 FROM gateway.api_request_logs"))
    admin = bearer(signing_key, role="admin")
    query = {"path_prefix": "/api/v1/experiments", "limit": 2}
    first = await client.get("/api/v1/admin/request-logs", params=query, headers=admin)
    assert first.status_code == 200, first.text
    page = first.json()
    assert [i["endpoint"] for i in page["items"]] == [
        "/api/v1/experiments/2",
        "/api/v1/experiments/1",
    ]
    second = await client.get(
        "/api/v1/admin/request-logs",
        params={**query, "cursor": page["next_cursor"]},
        headers=admin,
    )
    assert [i["endpoint"] for i in second.json()["items"]] == ["/api/v1/experiments/0"]
    assert second.json()["next_cursor"] is None
    bad = await client.get("/api/v1/admin/request-logs", params={"cursor": "nope"}, headers=admin)
    assert bad.status_code == 400
    assert bad.headers["content-type"] == PROBLEM_JSON


async def test_audit_log_lists_who_did_what_with_which_result(
    client, signing_key, eventually, db_conn
) -> None:
    actor = uuid.uuid4()
    await client.delete("/api/v1/webhooks/1", headers=bearer(signing_key, sub=str(actor)))  # 502
    await client.patch(
        "/api/v1/experiments/1", json={}, headers=bearer(signing_key, sub=str(actor))
    )
    await eventually(lambda: db_conn.fetchval("SELECT count(*) = 2 FROM gateway.system_logs"))
    admin = bearer(signing_key, role="admin")
    failures = await client.get(
        "/api/v1/admin/audit-log", params={"status": "failure"}, headers=admin
    )
    assert failures.status_code == 200, failures.text
    [entry] = failures.json()["items"]
    assert entry["user_id"] == str(actor)
    assert entry["action"] == "DELETE /api/v1/webhooks/{id}"
    assert entry["status_code"] == 502
    assert "webhooks" in entry["error_message"]
    mine = await client.get(
        "/api/v1/admin/audit-log", params={"user_id": str(actor)}, headers=admin
    )
    assert [e["action"] for e in mine.json()["items"]] == [
        "PATCH /api/v1/experiments/{id}",
        "DELETE /api/v1/webhooks/{id}",
    ]


async def test_metrics_endpoint_serves_the_rolled_up_summaries(
    client, signing_key, eventually, db_conn, engine
) -> None:
    for _ in range(3):
        await client.get("/api/v1/experiments", headers=bearer(signing_key))
    await eventually(lambda: db_conn.fetchval("SELECT count(*) = 3 FROM gateway.api_request_logs"))
    await rollup_once(engine)
    response = await client.get(
        "/api/v1/admin/metrics",
        params={"aggregation": "minute", "endpoint": "/api/v1/experiments"},
        headers=bearer(signing_key, role="admin"),
    )
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert sum(i["total_requests"] for i in items) == 3
    assert {i["method"] for i in items} == {"GET"}
    assert all(i["p99_response_time_ms"] >= i["p50_response_time_ms"] > 0 for i in items)


@pytest.mark.parametrize(
    "cursor",
    [
        pytest.param("nope", id="not-base64"),
        pytest.param("WyJ4Il0=", id="not-an-id"),  # ["x"]
        pytest.param("W3t9XQ==", id="an-object"),  # [{}]
        pytest.param("WzEsMl0=", id="two-values"),  # [1,2]
    ],
)
async def test_a_malformed_cursor_is_400_problem(client, signing_key, cursor) -> None:
    admin = bearer(signing_key, role="admin")
    for path in ("request-logs", "audit-log", "metrics"):
        response = await client.get(
            f"/api/v1/admin/{path}", params={"cursor": cursor}, headers=admin
        )
        assert response.status_code == 400, (path, response.text)
        assert response.headers["content-type"] == PROBLEM_JSON
