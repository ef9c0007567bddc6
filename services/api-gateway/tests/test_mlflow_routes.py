"""MLflow's API through the gateway, as the stock MLflow client calls it: the four prefixes go to
the experiments service with the path unchanged; ``MLFLOW_TRACKING_TOKEN`` (an access token or
an API key) and ``MLFLOW_TRACKING_USERNAME``/``PASSWORD`` (Basic, checked like a login by the
real auth service, whose lockout holds, on one session per user) identify the caller; the
gateway's own errors come in MLflow's ``{"error_code", "message"}`` shape."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest
from pydantic import SecretStr

from runyard.auth import totp
from runyard.auth.config import Settings as AuthSettings
from runyard.auth.main import create_app as create_auth_app
from runyard.shared.db import asyncpg_dsn
from runyard.shared.identity import verify_identity
from runyard.shared.settings import dev_secret
from runyard.shared.testing.serving import serve as serve_app

PREFIXES = (
    "/api/2.0/mlflow/",
    "/ajax-api/2.0/mlflow/",
    "/api/2.0/mlflow-artifacts/",
    "/ajax-api/2.0/mlflow-artifacts/",
)
PASSWORD = "correct horse battery staple"
KEY = "ry_" + "m" * 36


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def basic(login: str, password: str, *, charset: str = "utf-8") -> dict[str, str]:
    encoded = base64.b64encode(f"{login}:{password}".encode(charset)).decode()
    return {"Authorization": f"Basic {encoded}"}


def assert_mlflow_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    assert body["error_code"] == code
    assert isinstance(body["message"], str) and body["message"]
    return body


def identity_of(upstream: Any) -> Any:
    seen = {k: v[0] for k, v in upstream.received_headers().items()}
    return verify_identity(dev_secret("identity-signing").get_secret_value(), seen)


# --- routing --------------------------------------------------------------------------------


async def test_every_mlflow_prefix_reaches_experiments_with_path_and_query_unchanged(
    client, signing_key, experiments_upstream, auth_upstream
) -> None:
    user_id = uuid.uuid4()
    token = signing_key.token(sub=str(user_id))
    for prefix in PREFIXES:
        path = f"{prefix}runs/get"
        if "artifacts" in prefix:  # an artifact path as the client encodes it
            path = f"{prefix}artifacts/0/abc/artifacts/dir%20a/model%2Bv1.pkl"
        response = await client.get(
            f"{path}?run_id=abc&x=%2F", headers={**bearer(token), "X-Request-ID": "req-mlflow"}
        )
        assert response.status_code == 200, response.text
        seen = experiments_upstream.requests[-1]
        assert (seen["raw_path"], seen["query"]) == (path, "run_id=abc&x=%2F")
        headers = experiments_upstream.received_headers()
        assert "authorization" not in headers
        assert headers["x-request-id"] == ["req-mlflow"]
        assert identity_of(experiments_upstream).user_id == user_id
    posted = await client.post(
        "/api/2.0/mlflow/runs/log-metric?mirror=1",
        json={"run_id": "r", "key": "loss", "value": 0.5},
        headers=bearer(token),
    )
    assert posted.json() == {"run_id": "r", "key": "loss", "value": 0.5}
    assert len(experiments_upstream.requests) == len(PREFIXES) + 1
    assert auth_upstream.requests == []  # no proxied request went to auth


async def test_paths_of_the_mlflow_zone_no_service_serves_are_404_in_mlflow_shape(
    client, signing_key, experiments_upstream
) -> None:
    for path in (
        "/api/2.0/mlflow",
        "/api/2.0/preview/mlflow/runs/get",
        "/api/3.0/mlflow/traces/get",
        "/ajax-api/2.0/other/thing",
        "/ajax-api/2.0/mlflowx/runs/get",
    ):
        response = await client.get(path, headers=bearer(signing_key.token()))
        assert_mlflow_error(response, 404, "ENDPOINT_NOT_FOUND")
    # dot segments never reach the upstream (the client's %2E%2E is decoded to "..")
    dotted = await client.get(
        "/api/2.0/mlflow-artifacts/artifacts/%2E%2E/%2E%2E/secret",
        headers=bearer(signing_key.token()),
    )
    assert_mlflow_error(dotted, 400, "BAD_REQUEST")
    assert experiments_upstream.requests == []
    # Runyard's own API keeps problem+json
    unknown = await client.get("/api/v1/nowhere", headers=bearer(signing_key.token()))
    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == "application/problem+json"


# --- the gateway's errors in MLflow's shape -------------------------------------------------


async def test_gateway_401s_on_mlflow_paths_are_in_mlflow_shape(
    client, signing_key, impostor_key, experiments_upstream
) -> None:
    missing = await client.post("/api/2.0/mlflow/runs/create", json={})
    assert_mlflow_error(missing, 401, "UNAUTHENTICATED")
    forged = await client.get(
        "/ajax-api/2.0/mlflow/experiments/get", headers=bearer(impostor_key.token())
    )
    assert_mlflow_error(forged, 401, "UNAUTHENTICATED")
    assert "www-authenticate" in forged.headers
    malformed = await client.get(
        "/api/2.0/mlflow/experiments/get", headers={"Authorization": "Basic !!!"}
    )
    assert_mlflow_error(malformed, 401, "UNAUTHENTICATED")
    assert experiments_upstream.requests == []
    # the same failure on Runyard's API stays problem+json
    v1 = await client.get("/api/v1/experiments")
    assert v1.status_code == 401
    assert v1.headers["content-type"] == "application/problem+json"


async def test_rate_limited_mlflow_request_is_429_with_retry_after_in_mlflow_shape(
    start_gateway, signing_key, experiments_upstream
) -> None:
    token = signing_key.token()
    async with start_gateway(rate_limit_user_per_minute=1) as client:
        first = await client.post("/api/2.0/mlflow/runs/search", json={}, headers=bearer(token))
        assert first.status_code == 200
        second = await client.post("/api/2.0/mlflow/runs/search", json={}, headers=bearer(token))
    assert_mlflow_error(second, 429, "REQUEST_LIMIT_EXCEEDED")
    assert int(second.headers["retry-after"]) >= 1
    assert len(experiments_upstream.requests) == 1


async def test_unreachable_experiments_service_is_502_in_mlflow_shape(
    start_gateway, signing_key
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        nowhere = f"http://127.0.0.1:{s.getsockname()[1]}"
    async with start_gateway(experiments_url=nowhere) as client:
        response = await client.get(
            "/api/2.0/mlflow/experiments/get?experiment_id=0", headers=bearer(signing_key.token())
        )
    assert_mlflow_error(response, 502, "TEMPORARILY_UNAVAILABLE")


async def test_mlflow_requests_are_in_the_request_log_and_the_audit_trail(
    eventually, client, db_conn, signing_key
) -> None:
    user_id = uuid.uuid4()
    run_id = uuid.uuid4().hex
    response = await client.post(
        "/api/2.0/mlflow/runs/log-metric",
        json={"run_id": run_id, "key": "loss", "value": 0.5, "timestamp": 1, "step": 0},
        headers=bearer(signing_key.token(sub=str(user_id))),
    )
    assert response.status_code == 200

    async def logged() -> list[dict[str, Any]]:
        found = await db_conn.fetch("SELECT * FROM gateway.api_request_logs")
        return [dict(r) for r in found]

    [row] = await eventually(logged)
    assert (row["method"], row["endpoint"], row["service"]) == (
        "POST",
        "/api/2.0/mlflow/runs/log-metric",
        "experiments",
    )
    assert (row["user_id"], row["request_id"]) == (user_id, response.headers["x-request-id"])
    audit = await eventually(lambda: db_conn.fetch("SELECT * FROM gateway.system_logs"))
    assert len(audit) == 1


# --- uploads --------------------------------------------------------------------------------


async def test_mlflow_artifact_puts_get_the_upload_limit_and_other_bodies_the_usual_one(
    start_gateway, signing_key, experiments_upstream, body_pattern
) -> None:
    token = signing_key.token()
    limits = {"max_body_bytes": 10_000, "max_upload_bytes": 300_000}
    async with start_gateway(stream_threshold_bytes=16_384, **limits) as client:
        for path in (
            "/api/2.0/mlflow-artifacts/artifacts/0/abc/artifacts/weights.bin",
            # a logged model's artifact, through the ajax twin
            "/ajax-api/2.0/mlflow-artifacts/artifacts/0/models/m-1/artifacts/model.pkl",
        ):
            stored = await client.put(path, content=body_pattern(200_000), headers=bearer(token))
            assert stored.status_code == 200, stored.text
            assert experiments_upstream.requests[-1]["raw_path"] == path
            assert experiments_upstream.requests[-1]["body"].encode("latin-1") == body_pattern(
                200_000
            )
        too_big = await client.put(
            "/api/2.0/mlflow-artifacts/artifacts/0/abc/artifacts/huge.bin",
            content=body_pattern(400_000),
            headers=bearer(token),
        )
        not_an_upload = await client.post(
            "/api/2.0/mlflow/runs/log-batch",
            content=body_pattern(20_000),
            headers={**bearer(token), "Content-Type": "application/json"},
        )
    assert_mlflow_error(too_big, 413, "RESOURCE_LIMIT_EXCEEDED")
    assert_mlflow_error(not_an_upload, 413, "RESOURCE_LIMIT_EXCEEDED")
    assert len(experiments_upstream.requests) == 2


# --- API keys -------------------------------------------------------------------------------


def grant(*scopes: str) -> dict[str, Any]:
    return {
        "key_id": str(uuid.uuid4()),
        "user_id": str(uuid.uuid4()),
        "username": "ada",
        "role": "user",
        "scopes": list(scopes),
        "rate_limit": None,
        "expires_at": None,
    }


async def test_an_api_key_as_bearer_token_is_checked_with_mlflow_read_and_write_scopes(
    client, auth_upstream, experiments_upstream
) -> None:
    auth_upstream.api_keys[KEY] = grant("experiments:read")
    reads = [
        ("GET", "/api/2.0/mlflow/experiments/get-by-name?experiment_name=x"),
        ("POST", "/api/2.0/mlflow/runs/search"),
        ("POST", "/ajax-api/2.0/mlflow/experiments/search"),
        ("POST", "/api/2.0/mlflow/logged-models/search"),
        ("POST", "/api/2.0/mlflow/registered-models/get-latest-versions"),
        ("GET", "/api/2.0/mlflow/registered-models/search"),
        ("GET", "/api/2.0/mlflow/metrics/get-history-bulk-interval?run_ids=a&metric_key=m"),
        ("GET", "/api/2.0/mlflow-artifacts/artifacts/0/abc/artifacts/model.pkl"),
    ]
    for method, path in reads:
        response = await client.request(method, path, json={}, headers=bearer(KEY))
        assert response.status_code == 200, (path, response.text)
        assert experiments_upstream.received_headers()["x-runyard-auth-method"] == ["api_key"]
    writes = [
        ("POST", "/api/2.0/mlflow/runs/log-metric"),
        ("POST", "/api/2.0/mlflow/experiments/create"),
        ("POST", "/api/2.0/mlflow/logged-models"),
        ("POST", "/api/2.0/mlflow/registered-models/alias"),
        ("PUT", "/api/2.0/mlflow-artifacts/artifacts/0/abc/artifacts/model.pkl"),
        ("DELETE", "/ajax-api/2.0/mlflow-artifacts/artifacts/0/abc/artifacts/model.pkl"),
    ]
    for method, path in writes:
        response = await client.request(method, path, content=b"{}", headers=bearer(KEY))
        body = assert_mlflow_error(response, 403, "PERMISSION_DENIED")
        assert "experiments:write" in body["message"]
    assert len(experiments_upstream.requests) == len(reads)

    writer = "ry_" + "w" * 36
    auth_upstream.api_keys[writer] = grant("experiments:read", "experiments:write")
    for header in (bearer(writer), {"X-API-Key": writer}):
        written = await client.post("/api/2.0/mlflow/runs/log-metric", json={}, headers=header)
        assert written.status_code == 200, written.text


async def test_a_bearer_api_key_works_on_runyard_paths_and_an_unknown_one_is_401(
    client, auth_upstream, experiments_upstream
) -> None:
    auth_upstream.api_keys[KEY] = grant("experiments:read")
    assert (await client.get("/api/v1/experiments", headers=bearer(KEY))).status_code == 200
    unknown = await client.get("/api/2.0/mlflow/experiments/search", headers=bearer("ry_nope"))
    assert_mlflow_error(unknown, 401, "UNAUTHENTICATED")
    assert len(experiments_upstream.requests) == 1


async def test_guessing_bearer_api_keys_on_mlflow_paths_is_stopped_before_auth_is_asked(
    start_gateway, auth_upstream, experiments_upstream
) -> None:
    async with start_gateway(rate_limit_failed_api_keys_per_ip_per_minute=3) as client:
        answers = [
            await client.get(
                "/api/2.0/mlflow/experiments/search", headers=bearer(f"ry_guess{n:032d}")
            )
            for n in range(6)
        ]
    for answer in answers[:3]:
        assert_mlflow_error(answer, 401, "UNAUTHENTICATED")
    for answer in answers[3:]:
        assert_mlflow_error(answer, 429, "REQUEST_LIMIT_EXCEEDED")
        assert int(answer.headers["retry-after"]) >= 1
    assert len(auth_upstream.internal_calls) == 3
    assert experiments_upstream.requests == []


# --- Basic credentials against the real auth service ----------------------------------------


@contextlib.asynccontextmanager
async def serve(app: Any) -> AsyncIterator[str]:
    """The app on uvicorn on a free loopback port."""
    async with serve_app(app, proxy_headers=False) as url:
        yield url


@dataclass
class RealAuth:
    url: str
    db: asyncpg.Connection

    async def logins(self, username: str) -> list[tuple[bool, str | None]]:
        rows = await self.db.fetch(
            "SELECT success, failure_reason FROM auth.login_history"
            " WHERE username_attempted = $1 ORDER BY created_at",
            username,
        )
        return [(r["success"], r["failure_reason"]) for r in rows]

    async def sessions(self, user_id: str) -> list[tuple[str, bool]]:
        rows = await self.db.fetch(
            "SELECT kind, is_active FROM auth.session_logs WHERE user_id = $1 ORDER BY created_at",
            uuid.UUID(user_id),
        )
        return [(r["kind"], r["is_active"]) for r in rows]


@pytest.fixture
async def real_auth(make_service_database: Any, kafka_bootstrap: str) -> AsyncIterator[RealAuth]:
    """The auth service itself (its database, its lockout), argon2 at its cheapest."""
    database = await make_service_database("runyard.auth", "auth")
    settings = AuthSettings(
        environment="test",
        database_url=database.url,
        kafka_bootstrap_servers=kafka_bootstrap,
        run_workers=False,
        password_hash_memory_kib=8,
        password_hash_time_cost=1,
        password_hash_parallelism=1,
    )
    conn = await asyncpg.connect(asyncpg_dsn(database.admin_url))
    try:
        async with serve(create_auth_app(settings)) as url:
            yield RealAuth(url=url, db=conn)
    finally:
        await conn.close()


async def register(client: httpx.AsyncClient) -> tuple[str, str]:
    """A new account through the gateway: (username, user id)."""
    name = f"ml{uuid.uuid4().hex[:10]}"
    answer = await client.post(
        "/api/v1/auth/register",
        json={"username": name, "email": f"{name}@example.test", "password": PASSWORD},
    )
    assert answer.status_code == 201, answer.text
    return name, answer.json()["id"]


async def log_in(client: httpx.AsyncClient, name: str) -> str:
    answer = await client.post("/api/v1/auth/login", json={"login": name, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["access_token"]
    return token


async def test_basic_credentials_are_one_real_login_then_cached_and_only_on_mlflow_paths(
    start_gateway, real_auth, experiments_upstream
) -> None:
    async with start_gateway(auth_url=real_auth.url) as client:
        name, user_id = await register(client)
        # a burst of a cold client: one login at auth for all of them
        answers = await asyncio.gather(
            *(
                client.post(
                    "/api/2.0/mlflow/runs/search",
                    json={},
                    headers={**basic(name, PASSWORD), "User-Agent": "mlflow-python-client/3"},
                )
                for _ in range(5)
            )
        )
        assert [a.status_code for a in answers] == [200] * 5
        again = await client.get(
            "/ajax-api/2.0/mlflow/experiments/get", headers=basic(name, PASSWORD)
        )
        assert again.status_code == 200
        principal = identity_of(experiments_upstream)
        assert (str(principal.user_id), principal.username) == (user_id, name)
        assert principal.auth_method == "password"
        assert "authorization" not in experiments_upstream.received_headers()
        assert await real_auth.logins(name) == [(True, None)]
        # by email too (auth's login takes either)
        by_email = await client.get(
            "/api/2.0/mlflow/experiments/get", headers=basic(f"{name}@example.test", PASSWORD)
        )
        assert by_email.status_code == 200
        # Runyard's own API takes no Basic credentials, and does not ask auth
        v1 = await client.get("/api/v1/experiments", headers=basic(name, PASSWORD))
        assert v1.status_code == 401
        assert v1.headers["content-type"] == "application/problem+json"
    assert len(await real_auth.logins(name)) == 1
    # the email's check found the user's Basic session: nothing new to record
    assert await real_auth.logins(f"{name}@example.test") == []
    assert await real_auth.sessions(user_id) == [("basic_auth", True)]
    assert len(experiments_upstream.requests) == 7


async def test_every_cache_miss_checks_the_password_on_the_users_one_basic_session(
    start_gateway, real_auth, experiments_upstream
) -> None:
    # nothing cached: every request is a check at auth, as every 5 minutes with the default
    async with start_gateway(auth_url=real_auth.url, basic_auth_cache_s=0) as client:
        name, user_id = await register(client)
        for _ in range(3):
            ok = await client.get("/api/2.0/mlflow/experiments/get", headers=basic(name, PASSWORD))
            assert ok.status_code == 200, ok.text
        assert await real_auth.sessions(user_id) == [("basic_auth", True)]
        assert await real_auth.logins(name) == [(True, None)]
        # the next miss is refused at once: auth judged the credentials again
        await real_auth.db.execute(
            "UPDATE auth.users SET is_active = false WHERE id = $1", uuid.UUID(user_id)
        )
        refused = await client.get("/api/2.0/mlflow/experiments/get", headers=basic(name, PASSWORD))
    assert_mlflow_error(refused, 401, "UNAUTHENTICATED")
    assert await real_auth.logins(name) == [(True, None), (False, "inactive_user")]
    assert len(experiments_upstream.requests) == 3


async def test_basic_credentials_fail_closed_when_auth_refuses_the_gateways_signature(
    start_gateway, real_auth, experiments_upstream
) -> None:
    async with start_gateway(
        auth_url=real_auth.url, identity_secret=SecretStr("not-the-shared-secret")
    ) as client:
        name = f"ml{uuid.uuid4().hex[:10]}"
        answer = await client.get("/api/2.0/mlflow/experiments/get", headers=basic(name, PASSWORD))
    assert_mlflow_error(answer, 503, "TEMPORARILY_UNAVAILABLE")
    assert await real_auth.logins(name) == []  # auth judged nothing
    assert experiments_upstream.requests == []


async def test_a_wrong_basic_password_is_a_failed_login_and_the_lockout_holds(
    start_gateway, real_auth, experiments_upstream
) -> None:
    async with start_gateway(auth_url=real_auth.url) as client:
        name, _ = await register(client)
        for attempt in range(5):  # auth locks after 5 failures (AUTH_LOCKOUT_FAILURE_FACTOR)
            wrong = await client.get(
                "/api/2.0/mlflow/experiments/search", headers=basic(name, "wrong password")
            )
            assert_mlflow_error(wrong, 401, "UNAUTHENTICATED")
            failures = await real_auth.logins(name)
            assert failures == [(False, "invalid_password")] * (attempt + 1)  # none cached
        # the right password no longer opens the account, through MLflow or the login page
        locked = await client.get(
            "/api/2.0/mlflow/experiments/search", headers=basic(name, PASSWORD)
        )
        body = assert_mlflow_error(locked, 401, "UNAUTHENTICATED")
        assert "locked" in body["message"]
        assert int(locked.headers["retry-after"]) >= 1
        page = await client.post("/api/v1/auth/login", json={"login": name, "password": PASSWORD})
        assert page.status_code == 423
    assert (await real_auth.logins(name))[-2:] == [(False, "account_locked")] * 2
    assert experiments_upstream.requests == []


async def test_basic_logins_spend_the_clients_login_allowance(
    start_gateway, real_auth, experiments_upstream
) -> None:
    async with start_gateway(auth_url=real_auth.url, rate_limit_login_per_ip_per_minute=3) as c:
        name, _ = await register(c)  # one from the allowance
        for password in ("guess one", "guess two"):
            wrong = await c.get("/api/2.0/mlflow/runs/get", headers=basic(name, password))
            assert_mlflow_error(wrong, 401, "UNAUTHENTICATED")
        limited = await c.get("/api/2.0/mlflow/runs/get", headers=basic(name, "guess three"))
    assert_mlflow_error(limited, 429, "REQUEST_LIMIT_EXCEEDED")
    assert "retry-after" in limited.headers
    assert len(await real_auth.logins(name)) == 2  # the third guess never reached auth


async def test_an_account_with_two_factor_gets_a_clear_refusal_for_basic_credentials(
    start_gateway, real_auth, experiments_upstream
) -> None:
    async with start_gateway(auth_url=real_auth.url) as client:
        name, _ = await register(client)
        token = await log_in(client, name)
        setup = await client.post("/api/v1/auth/2fa/setup", headers=bearer(token))
        assert setup.status_code == 200, setup.text
        code = totp.code_at_step(setup.json()["secret"], totp.step_at(datetime.now(UTC)))
        enabled = await client.post(
            "/api/v1/auth/2fa/enable",
            json={"code": code, "current_password": PASSWORD},
            headers=bearer(token),
        )
        assert enabled.status_code == 200, enabled.text
        refused = await client.get(
            "/api/2.0/mlflow/experiments/search", headers=basic(name, PASSWORD)
        )
        body = assert_mlflow_error(refused, 401, "UNAUTHENTICATED")
        assert "two-factor" in body["message"] and "API key" in body["message"]
        wrong = await client.get(
            "/api/2.0/mlflow/experiments/search", headers=basic(name, "not it")
        )
        assert "two-factor" not in assert_mlflow_error(wrong, 401, "UNAUTHENTICATED")["message"]
    assert experiments_upstream.requests == []


async def test_real_access_tokens_and_api_keys_work_as_mlflow_tracking_token(
    start_gateway, real_auth, experiments_upstream
) -> None:
    # sessions asked about on every request, so the logout below shows at once
    async with start_gateway(auth_url=real_auth.url, session_cache_s=0) as client:
        name, user_id = await register(client)
        token = await log_in(client, name)
        created = await client.post(
            "/api/v1/auth/api-keys",
            json={
                "name": "mlflow",
                "scopes": ["experiments:read", "experiments:write"],
                "current_password": PASSWORD,
            },
            headers=bearer(token),
        )
        assert created.status_code == 201, created.text
        key = created.json()["key"]
        by_token = await client.post("/api/2.0/mlflow/runs/create", json={}, headers=bearer(token))
        assert by_token.status_code == 200
        assert identity_of(experiments_upstream).auth_method == "jwt"
        by_key = await client.post("/api/2.0/mlflow/runs/create", json={}, headers=bearer(key))
        assert by_key.status_code == 200
        principal = identity_of(experiments_upstream)
        assert (str(principal.user_id), principal.auth_method) == (user_id, "api_key")
        # the session ends (log out): its token is refused by MLflow paths too
        logout = await client.post("/api/v1/auth/logout", headers=bearer(token))
        assert logout.status_code == 204, logout.text
        ended = await client.get("/api/2.0/mlflow/experiments/get", headers=bearer(token))
    assert_mlflow_error(ended, 401, "UNAUTHENTICATED")


async def test_basic_credentials_follow_the_session_and_the_current_password(
    start_gateway, real_auth, experiments_upstream
) -> None:
    """The cached login's session ends (log out everywhere): the gateway logs in again and the
    password decides; after a password change the old one is refused."""
    async with start_gateway(auth_url=real_auth.url, session_cache_s=0) as client:
        name, user_id = await register(client)
        password = "pâte brisée, très secrète"  # non-ASCII: python-requests sends Latin-1
        token = await log_in(client, name)
        changed = await client.patch(
            "/api/v1/auth/me",
            json={"current_password": PASSWORD, "new_password": password},
            headers=bearer(token),
        )
        assert changed.status_code in (200, 204), changed.text
        for charset in ("utf-8", "latin-1"):
            ok = await client.get(
                "/api/2.0/mlflow/experiments/get", headers=basic(name, password, charset=charset)
            )
            assert ok.status_code == 200, ok.text
        # the page's login, then one for both encodings: the same credentials
        assert await real_auth.logins(name) == [(True, None)] * 2
        page_token = await log_in_with(client, name, password)
        ended = await client.post(
            "/api/v1/auth/sessions/revoke-all",
            json={"include_current": True},
            headers=bearer(page_token),
        )
        assert ended.status_code == 200, ended.text
        again = await client.get("/api/2.0/mlflow/experiments/get", headers=basic(name, password))
        assert again.status_code == 200, again.text
        assert await real_auth.logins(name) == [(True, None)] * 4  # one new login for it
        # the ended Basic session stays ended: the check started a new one
        assert [kind for kind, active in await real_auth.sessions(user_id) if active] == [
            "basic_auth"
        ]
        old = await client.get("/api/2.0/mlflow/experiments/get", headers=basic(name, PASSWORD))
        assert_mlflow_error(old, 401, "UNAUTHENTICATED")
    assert (await real_auth.logins(name))[-1] == (False, "invalid_password")
    assert len(experiments_upstream.requests) == 3


async def log_in_with(client: httpx.AsyncClient, name: str, password: str) -> str:
    answer = await client.post("/api/v1/auth/login", json={"login": name, "password": password})
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["access_token"]
    return token
