from __future__ import annotations

import asyncpg

from runyard.shared.db import asyncpg_dsn


async def test_migrations_create_the_gateways_tables_in_its_schema(db) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(db.admin_url))
    try:
        tables = await conn.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'gateway'"
        )
    finally:
        await conn.close()
    assert {
        "outbox",
        "inbox",
        "api_request_logs",
        "api_metrics_summary",
        "system_logs",
    } <= {r["table_name"] for r in tables}


async def test_upstream_readiness_names_the_service_that_is_down(client) -> None:
    response = await client.get("/ready/upstreams")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    upstreams = response.json()["upstreams"]
    assert upstreams["auth"] == upstreams["experiments"] == upstreams["notifications"] == "ok"
    assert upstreams["webhooks"].startswith("error")


async def test_gateway_is_alive_but_not_ready_while_an_upstream_is_down(client) -> None:
    assert (await client.get("/health")).status_code == 200
    ready = await client.get("/ready")
    assert ready.status_code == 503
    assert ready.headers["content-type"] == "application/problem+json"
    checks = ready.json()["checks"]
    assert checks["postgres"] == "ok"
    assert checks["kafka"] == "ok"
    assert checks["upstreams"] == "error"


async def test_ready_with_an_upstream_down_shows_no_exception_text(client, settings) -> None:
    webhooks_port = settings.webhooks_url.rsplit(":", 1)[1]
    for path in ("/ready", "/ready/upstreams"):
        answer = await client.get(path)
        assert answer.status_code == 503
        for leak in ("Error", "Exception", "Connect", "refused", "127.0.0.1", webhooks_port):
            assert leak not in answer.text, (path, leak, answer.text)


async def test_an_anonymous_get_of_metrics_on_the_api_port_is_refused(client) -> None:
    await client.get("/api/v1/experiments")  # something to count
    for method in ("GET", "HEAD"):
        answer = await client.request(method, "/metrics")
        assert answer.status_code == 404
        assert "runyard_" not in answer.text
    assert (await client.get("/metrics?format=prometheus")).status_code == 404


async def test_metrics_are_served_on_their_own_listener(client) -> None:
    await client.get("/api/v1/experiments")
    assert not client.metrics_url.startswith(str(client.base_url))
    answer = await client.get(client.metrics_url)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    assert "runyard_http_request_duration_seconds_count" in answer.text
    assert "runyard_gateway_circuit_state" in answer.text
