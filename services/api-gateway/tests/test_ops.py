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
    assert "webhooks" in checks["upstreams"]
    assert "auth" not in checks["upstreams"]
