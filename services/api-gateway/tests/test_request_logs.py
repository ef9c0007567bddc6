"""Every /api/v1 request becomes an api_request_logs row, written in batches off the request path;
state-changing requests of identified callers also become system_logs rows; API-key requests
publish api_key.used through the outbox."""

from __future__ import annotations

import json
import re
import uuid

KEY = "ry_" + "q" * 40


def bearer(signing_key, **claims) -> dict[str, str]:
    return {"Authorization": f"Bearer {signing_key.token(**claims)}"}


def grant(user_id: uuid.UUID, *scopes: str, **extra) -> dict:
    return {
        "key_id": str(uuid.uuid4()),
        "user_id": str(user_id),
        "username": "ada",
        "role": "user",
        "scopes": list(scopes),
        "rate_limit": None,
        "expires_at": None,
        **extra,
    }


async def rows(conn, table: str, where: str = "TRUE", *args) -> list[dict]:
    records = await conn.fetch(f"SELECT * FROM gateway.{table} WHERE {where} ORDER BY id", *args)
    return [dict(r) for r in records]


async def dropped(client, reason: str = "queue_full") -> float:
    text = (await client.get(client.metrics_url)).text
    match = re.search(
        rf'^runyard_gateway_request_logs_dropped_total\{{reason="{reason}"\}} (\S+)$', text, re.M
    )
    return float(match.group(1)) if match else 0.0


async def test_a_proxied_request_is_logged_with_who_what_and_how_long(
    eventually, client, db_conn, signing_key
) -> None:
    user_id = uuid.uuid4()
    experiment = uuid.uuid4()
    response = await client.post(
        f"/api/v1/experiments/{experiment}/runs?status=201",
        json={"epoch": 1, "metrics": {"loss": 0.5}},
        headers={**bearer(signing_key, sub=str(user_id)), "User-Agent": "trainer/1.0"},
    )
    assert response.status_code == 201
    [row] = await eventually(lambda: rows(db_conn, "api_request_logs"))
    assert row["request_id"] == response.headers["x-request-id"]
    assert (row["method"], row["status_code"], row["service"]) == ("POST", 201, "experiments")
    assert row["endpoint"] == f"/api/v1/experiments/{experiment}/runs"
    assert row["route"] == "/api/v1/experiments/{id}/runs"
    assert row["user_id"] == user_id
    assert row["auth_method"] == "jwt"
    assert row["api_key_id"] is None
    assert row["ip_address"] == "127.0.0.1"
    assert row["user_agent"] == "trainer/1.0"
    assert row["request_size_bytes"] == len(b'{"epoch":1,"metrics":{"loss":0.5}}')
    assert row["response_size_bytes"] == len(response.content)
    assert row["response_time_ms"] > 0
    assert json.loads(row["request_payload_sample"]) == {"epoch": 1, "metrics": {"loss": 0.5}}
    assert row["error_message"] is None


async def test_secrets_in_payload_samples_are_redacted(eventually, client, db_conn) -> None:
    body = {
        "username": "ada",
        "password": "hunter22",
        "profile": {"api_key": "ry_secret", "sessions": [{"refresh_token": "r1"}]},
    }
    await client.post("/api/v1/auth/register?mirror", json=body)  # the echo answers the same
    [row] = await eventually(lambda: rows(db_conn, "api_request_logs"))
    redacted = {
        "username": "ada",
        "password": "[redacted]",
        "profile": {"api_key": "[redacted]", "sessions": [{"refresh_token": "[redacted]"}]},
    }
    assert json.loads(row["request_payload_sample"]) == redacted
    assert json.loads(row["response_payload_sample"]) == redacted
    assert row["user_id"] is None


async def test_an_mlflow_request_keeps_its_metric_names_and_loses_secret_params(
    eventually, client, db_conn, signing_key
) -> None:
    """MLflow names each metric, param and tag in a ``key`` field: the request log keeps the
    names (an admin reading it sees which metrics a loop logs) and redacts a param's value when
    its name says secret."""
    body = {
        "run_id": uuid.uuid4().hex,
        "metrics": [{"key": "val_loss", "value": 0.5, "timestamp": 1, "step": 3}],
        "params": [{"key": "lr", "value": "0.01"}, {"key": "db_password", "value": "hunter22"}],
    }
    response = await client.post(
        "/api/2.0/mlflow/runs/log-batch?mirror",
        json=body,
        headers=bearer(signing_key, sub=str(uuid.uuid4())),
    )
    assert response.status_code == 200
    [row] = await eventually(lambda: rows(db_conn, "api_request_logs"))
    assert row["endpoint"] == "/api/2.0/mlflow/runs/log-batch"
    redacted = {
        **body,
        "params": [{"key": "lr", "value": "0.01"}, {"key": "db_password", "value": "[redacted]"}],
    }
    assert json.loads(row["request_payload_sample"]) == redacted
    assert json.loads(row["response_payload_sample"]) == redacted
    assert "hunter22" not in json.dumps(
        [dict(r) for r in await rows(db_conn, "system_logs")], default=str
    )


async def test_refused_requests_are_logged_with_their_error(eventually, client, db_conn) -> None:
    response = await client.get("/api/v1/experiments")
    assert response.status_code == 401
    [row] = await eventually(lambda: rows(db_conn, "api_request_logs"))
    assert row["status_code"] == 401
    assert row["error_message"] == response.json()["detail"]


async def test_state_changing_requests_of_a_user_are_in_the_audit_trail_and_reads_are_not(
    eventually, client, db_conn, signing_key
) -> None:
    user_id = uuid.uuid4()
    headers = bearer(signing_key, sub=str(user_id), preferred_username="grace")
    await client.get("/api/v1/experiments", headers=headers)
    await client.delete("/api/v1/experiments/42", headers=headers)
    await client.post("/api/v1/experiments/42/start?status=409", headers=headers)
    await client.post("/api/v1/experiments", json={})  # nobody: 401, not audited
    await eventually(lambda: db_conn.fetchval("SELECT count(*) = 4 FROM gateway.api_request_logs"))
    audit = await rows(db_conn, "system_logs")
    assert [(a["action"], a["status"], a["status_code"]) for a in audit] == [
        ("DELETE /api/v1/experiments/{id}", "success", 200),
        ("POST /api/v1/experiments/{id}/start", "failure", 409),
    ]
    assert {a["user_id"] for a in audit} == {user_id}
    assert {a["username"] for a in audit} == {"grace"}
    details = json.loads(audit[0]["details"])
    assert details["path"] == "/api/v1/experiments/42"
    assert details["auth_method"] == "jwt"


async def test_each_api_key_request_adds_one_api_key_used_event_to_the_outbox(
    eventually, client, db_conn, auth_upstream, signing_key
) -> None:
    owner = uuid.uuid4()
    auth_upstream.api_keys[KEY] = grant(owner, "experiments:read")
    key_id = auth_upstream.api_keys[KEY]["key_id"]
    await client.get("/api/v1/experiments", headers={"X-API-Key": KEY})
    await client.post("/api/v1/experiments", json={}, headers={"X-API-Key": KEY})  # 403 scope
    await client.get("/api/v1/experiments", headers=bearer(signing_key))  # no key: no event
    await eventually(lambda: db_conn.fetchval("SELECT count(*) = 3 FROM gateway.api_request_logs"))
    outbox = await db_conn.fetch("SELECT topic, key, payload FROM gateway.outbox ORDER BY id")
    assert [(r["topic"], r["key"]) for r in outbox] == [("api_key.used", key_id)] * 2
    data = [json.loads(r["payload"])["data"] for r in outbox]
    assert [(d["method"], d["status"]) for d in data] == [("GET", 200), ("POST", 403)]
    assert {d["key_id"] for d in data} == {key_id}
    assert {d["user_id"] for d in data} == {str(owner)}
    assert data[0]["route"] == "/api/v1/experiments"
    assert data[0]["ip_address"] == "127.0.0.1"
    logged = await rows(db_conn, "api_request_logs", "api_key_id IS NOT NULL")
    assert {str(r["api_key_id"]) for r in logged} == {key_id}
    [denied] = await rows(db_conn, "system_logs")
    assert (denied["action"], denied["status"]) == ("POST /api/v1/experiments", "failure")


async def test_a_stalled_database_drops_and_counts_log_entries_but_never_delays_responses(
    eventually, start_gateway, db_conn, signing_key
) -> None:
    async with start_gateway(request_log_queue_size=3, request_log_batch_size=2) as client:
        before = await dropped(client)
        lock = db_conn.transaction()
        await lock.start()
        await db_conn.execute("LOCK TABLE gateway.api_request_logs IN ACCESS EXCLUSIVE MODE")
        try:
            statuses = [
                (await client.get("/api/v1/experiments", headers=bearer(signing_key))).status_code
                for _ in range(12)
            ]
            lost = await dropped(client) - before
        finally:
            await lock.rollback()
        assert statuses == [200] * 12
        assert lost >= 12 - 3 - 2  # at most a full queue and one batch in flight were kept

        async def all_kept_entries_written() -> bool:
            count = await db_conn.fetchval("SELECT count(*) FROM gateway.api_request_logs")
            return bool(count == 12 - lost)

        # once the lock is gone the writer carries on: every entry it kept is written
        await eventually(all_kept_entries_written)
    assert lost < 12


async def test_values_postgres_cannot_store_do_not_cost_the_batch_its_rows(
    eventually, client, db_conn, signing_key
) -> None:
    headers = {**bearer(signing_key), "Content-Type": "application/json"}
    before = await dropped(client, "write_failed")
    await client.post("/api/v1/experiments/a%00b", content=b'{"loss": NaN}', headers=headers)
    await client.post("/api/v1/experiments", content=b'{"note": "a\\u0000b"}', headers=headers)
    await client.get("/api/v1/experiments", headers=headers)

    async def three_rows() -> list[dict]:
        found = await rows(db_conn, "api_request_logs")
        return found if len(found) == 3 else []

    nul_path, nul_body, plain = await eventually(three_rows)
    assert nul_path["endpoint"] == "/api/v1/experiments/ab"
    assert json.loads(nul_path["request_payload_sample"])["sampled"] is False  # NaN: not JSON
    assert json.loads(nul_body["request_payload_sample"]) == {"note": "ab"}
    assert plain["method"] == "GET"
    assert await dropped(client, "write_failed") == before


SLACK = "https://hooks.slack.com/services/T0AAAAAAA/B0BBBBBBB/sLaCkPaThSeCrEt01"
TOTP_URI = "otpauth://totp/Runyard:ada?secret=JBSWY3DPEHPK3PXPJBSWY3DP&issuer=Runyard"
WHSEC = "whsec_" + "c2VjcmV0LXNpZ25pbmcta2V5LTMyLWJ5dGVzIQ=="
API_KEY = "ry_" + "Zx8" * 12


async def test_secret_values_never_reach_the_request_logs(eventually, client, db_conn) -> None:
    """Key-based redaction misses these: a secret under an innocent name, custom header values,
    a key in the path and in X-Request-ID."""
    body = {
        "otpauth_uri": TOTP_URI,
        "url": SLACK,
        "settings": {"headers": {"X-Team-Auth": "custom-header-value-1"}},
        "note": f"rotated to {WHSEC}, old key {API_KEY}",
        "callback": "https://h.example/cb?token=query-secret-1&page=2",
    }
    await client.post("/api/v1/auth/register?mirror", json=body)  # the echo answers the same
    await client.get(f"/api/v1/experiments/{API_KEY}", headers={"X-Request-ID": API_KEY})
    await eventually(lambda: db_conn.fetchval("SELECT count(*) = 2 FROM gateway.api_request_logs"))
    logged = await rows(db_conn, "api_request_logs")
    text = json.dumps([{k: str(v) for k, v in row.items()} for row in logged])
    for secret in (
        "JBSWY3DPEHPK3PXPJBSWY3DP",
        "sLaCkPaThSeCrEt01",
        "custom-header-value-1",
        "c2VjcmV0LXNpZ25pbmcta2V5",
        API_KEY,
        "query-secret-1",
    ):
        assert secret not in text, secret
    sample = json.loads(logged[0]["request_payload_sample"])
    assert sample["url"] == "https://hooks.slack.com/[redacted]"
    assert sample["settings"] == {"headers": {"X-Team-Auth": "[redacted]"}}
    assert sample["callback"] == "https://h.example/cb?token=[redacted]&page=2"
    assert logged[1]["endpoint"] == "/api/v1/experiments/ry_[redacted]"


async def test_entries_still_queued_at_shutdown_are_written_before_the_gateway_stops(
    start_gateway, db_conn, signing_key
) -> None:
    # the writer waits a minute for a batch to gather: only the shutdown drain can write these
    async with start_gateway(request_log_flush_interval_s=60.0) as client:
        paths = [f"/api/v1/experiments/{uuid.uuid4()}" for _ in range(5)]
        for path in paths:
            assert (await client.get(path, headers=bearer(signing_key))).status_code == 200
        assert await db_conn.fetchval("SELECT count(*) FROM gateway.api_request_logs") == 0
    logged = await rows(db_conn, "api_request_logs")
    assert [row["endpoint"] for row in logged] == paths


async def test_a_nul_escaped_in_a_json_body_is_removed_from_the_sample(
    eventually, client, db_conn, signing_key
) -> None:
    body = b'{"note": "a\\u0000b", "ki\\u0000nd": 1}'
    response = await client.post(
        "/api/v1/experiments/x?mirror=1",
        content=body,
        headers={**bearer(signing_key), "Content-Type": "application/json"},
    )
    assert response.status_code == 200
    [row] = await eventually(lambda: rows(db_conn, "api_request_logs"))
    assert json.loads(row["request_payload_sample"]) == {"note": "ab", "kind": 1}
    assert json.loads(row["response_payload_sample"]) == {"note": "ab", "kind": 1}
