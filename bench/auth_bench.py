"""Benchmark of the auth service: logins per second and token verifications per second.

1. Logins (`POST /api/v1/auth/login`, argon2id at the production OWASP parameters, session row,
   refresh token, login history, outbox event): one client in sequence (latency), then
   --concurrency clients (throughput).
2. Refreshes (`POST /api/v1/auth/refresh`: rotate the refresh token, sign a new access token).
3. Access-token verifications as the gateway does them: PyJWT EdDSA signature + claims against
   the JWKS key, in this process, one core.
4. The gateway's internal checks against auth: `POST /internal/v1/api-keys/verify` and
   `GET /internal/v1/sessions/{sid}`, --concurrency clients.

The service runs as a real uvicorn process on a local port (HTTP/1.1 keep-alive) by default,
or in-process (httpx over ASGI) with --in-process. Not through the gateway.

Usage: uv run python bench/auth_bench.py [--logins 300] [--concurrency 8] [--checks 3000]
       [--verifications 20000] [--in-process]
Uses DATABASE_URL / KAFKA_BOOTSTRAP_SERVERS when set, else starts embedded Postgres and Tansu.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import jwt

from runyard.auth.config import Settings
from runyard.auth.main import create_app
from runyard.shared.identity import internal_call_headers
from runyard.shared.migrations import upgrade
from runyard.shared.provision import ensure_database, provision_service, role_url
from runyard.shared.settings import dev_secret
from runyard.shared.testing import (
    _with_db,
    free_port,
    identity_headers,
    local_infrastructure,
    running_app,
    wait_for_port,
)

DB_PASSWORD = "bench-auth"
PASSWORD = "correct horse battery"
SECRET = dev_secret("identity-signing").get_secret_value()


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def summary(ms: list[float]) -> str:
    return (
        f"p50 {percentile(ms, 0.5):.1f} / p95 {percentile(ms, 0.95):.1f} / "
        f"p99 {percentile(ms, 0.99):.1f} ms"
    )


async def prepare_database(admin_url: str) -> str:
    name = f"bench_auth_{uuid.uuid4().hex[:8]}"
    await ensure_database(admin_url, name)
    await provision_service(
        _with_db(admin_url, name),
        schema="auth",
        role="runyard_auth",
        password=DB_PASSWORD,
        database=name,
    )
    url = role_url(admin_url, role="runyard_auth", password=DB_PASSWORD, database=name)
    await asyncio.to_thread(upgrade, "runyard.auth", url)
    return url


@contextlib.asynccontextmanager
async def service_client(url: str, bootstrap: str, in_process: bool) -> AsyncIterator[Any]:
    if in_process:
        settings = Settings(
            environment="test",
            database_url=url,
            kafka_bootstrap_servers=bootstrap,
            log_level="WARNING",
            log_json=True,
        )
        async with running_app(create_app(settings)) as client:
            yield client
        return
    port = free_port()
    env = {
        **os.environ,
        "AUTH_ENVIRONMENT": "test",
        "AUTH_DATABASE_URL": url,
        "AUTH_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "AUTH_LOG_LEVEL": "WARNING",
        "AUTH_LOG_JSON": "true",
    }
    proc = subprocess.Popen(  # noqa: ASYNC220 - once, before any timing
        [
            sys.executable,
            "-m",
            "uvicorn",
            "runyard.auth.main:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        env=env,
        start_new_session=True,
    )
    try:
        await asyncio.to_thread(wait_for_port, "127.0.0.1", port, 60.0)
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", timeout=60, limits=limits
        ) as client:
            for _ in range(100):
                if (await client.get("/ready")).status_code == 200:
                    break
                await asyncio.sleep(0.1)
            yield client
    finally:
        proc.terminate()
        proc.wait(timeout=20)


async def concurrently(
    total: int, concurrency: int, call: Callable[[int], Awaitable[httpx.Response]], status: int
) -> tuple[float, list[float]]:
    """Run ``call(i)`` for i < total with ``concurrency`` workers; (wall seconds, latencies ms)."""
    latencies: list[float] = []
    counter = iter(range(total))

    async def worker() -> None:
        for i in counter:
            started = time.perf_counter()
            response = await call(i)
            latencies.append((time.perf_counter() - started) * 1000)
            assert response.status_code == status, response.text

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started, latencies


async def run(args: argparse.Namespace, admin_url: str, bootstrap: str) -> dict[str, str]:
    url = await prepare_database(admin_url)
    results: dict[str, str] = {}
    async with service_client(url, bootstrap, args.in_process) as client:
        users = []
        for i in range(args.concurrency):
            response = await client.post(
                "/api/v1/auth/register",
                json={
                    "username": f"bench{i}",
                    "email": f"bench{i}@example.org",
                    "password": PASSWORD,
                },
            )
            assert response.status_code == 201, response.text
            users.append(response.json())

        def log_in(i: int) -> Awaitable[httpx.Response]:
            return client.post(
                "/api/v1/auth/login",
                json={"login": f"bench{i % len(users)}", "password": PASSWORD},
                headers={"User-Agent": "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Firefox/133.0"},
            )

        await concurrently(10, 1, log_in, 200)  # warm-up
        sequential = max(20, args.logins // 5)
        wall, latencies = await concurrently(sequential, 1, log_in, 200)
        results["login, one client"] = f"{sequential / wall:.1f} logins/s; {summary(latencies)}"
        wall, latencies = await concurrently(args.logins, args.concurrency, log_in, 200)
        results[f"login, {args.concurrency} clients"] = (
            f"{args.logins / wall:.1f} logins/s; {summary(latencies)}"
        )

        tokens = (await log_in(0)).json()
        refresh_tokens = [tokens["refresh_token"]]

        async def refresh(_i: int) -> httpx.Response:
            response = await client.post(
                "/api/v1/auth/refresh", json={"refresh_token": refresh_tokens[-1]}
            )
            if response.status_code == 200:
                refresh_tokens.append(response.json()["refresh_token"])
            return response

        count = max(50, args.logins // 2)
        wall, latencies = await concurrently(count, 1, refresh, 200)
        results["refresh (rotation), one client"] = (
            f"{count / wall:.0f} refreshes/s; {summary(latencies)}"
        )

        jwk = (await client.get("/api/v1/auth/.well-known/jwks.json")).json()["keys"][0]
        key = jwt.PyJWK(jwk).key
        access = tokens["access_token"]
        started = time.perf_counter()
        for _ in range(args.verifications):
            jwt.decode(
                access, key=key, algorithms=["EdDSA"], audience="runyard-api", issuer="runyard"
            )
        wall = time.perf_counter() - started
        results["access-token verification (PyJWT, in-process)"] = (
            f"{args.verifications / wall:,.0f} verifications/s on one core "
            f"({wall / args.verifications * 1e6:.0f} µs each)"
        )

        created = await client.post(
            "/api/v1/auth/api-keys",
            json={
                "name": "bench",
                "scopes": ["experiments:read", "experiments:write"],
                "current_password": PASSWORD,
            },
            headers=identity_headers(uuid.UUID(users[0]["id"]), "user", "bench0"),
        )
        assert created.status_code == 201, created.text
        api_key = created.json()["key"]

        def verify(_i: int) -> Awaitable[httpx.Response]:
            path = "/internal/v1/api-keys/verify"
            return client.post(
                path,
                json={"key": api_key},
                headers=internal_call_headers(SECRET, method="POST", path=path),
            )

        sid = jwt.decode(access, options={"verify_signature": False})["sid"]

        def session_check(_i: int) -> Awaitable[httpx.Response]:
            path = f"/internal/v1/sessions/{sid}"
            return client.get(path, headers=internal_call_headers(SECRET, method="GET", path=path))

        for name, call in (("API-key verify", verify), ("session check", session_check)):
            await concurrently(50, args.concurrency, call, 200)
            wall, latencies = await concurrently(args.checks, args.concurrency, call, 200)
            results[f"internal {name}, {args.concurrency} clients"] = (
                f"{args.checks / wall:,.0f} checks/s; {summary(latencies)}"
            )
    results["mode"] = "in-process (ASGI)" if args.in_process else "uvicorn, HTTP/1.1 keep-alive"
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--logins", type=int, default=300, help="logins in the concurrent run")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--checks", type=int, default=3000, help="internal checks of each kind")
    parser.add_argument("--verifications", type=int, default=20_000)
    parser.add_argument("--in-process", action="store_true", help="ASGI in this process")
    args = parser.parse_args()
    with local_infrastructure() as (admin_url, bootstrap):
        result = asyncio.run(run(args, admin_url, bootstrap))
    print(f"machine: {platform.node()} {os.cpu_count()} cores, Python {platform.python_version()}")
    for key, value in result.items():
        print(f"{key:>52}: {value}")


if __name__ == "__main__":
    main()
