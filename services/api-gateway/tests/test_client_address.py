"""The client address the gateway signs for the services, and the public recovery routes: a
client cannot pass its own address upstream, and an IPv6 client cannot spread its requests over
the addresses of its /64 to get more of a per-client limit."""

from __future__ import annotations

import pytest

from runyard.shared.identity import verified_client_address
from runyard.shared.settings import dev_secret

SECRET = dev_secret("identity-signing").get_secret_value()
RECOVERY_ROUTES = (
    "/api/v1/auth/password-reset",
    "/api/v1/auth/password-reset/confirm",
    "/api/v1/auth/verify-email",
)


@pytest.fixture
def auth_headers(signing_key) -> dict[str, str]:
    return {"Authorization": f"Bearer {signing_key.token()}"}


def upstream_headers(record: dict) -> dict[str, str]:
    return {k.lower(): v for k, v in record["headers"]}


async def test_the_upstream_gets_the_resolved_address_signed_never_one_the_client_wrote(
    start_gateway, auth_headers, experiments_upstream
) -> None:
    forged = {
        "X-Runyard-Client-Address": "192.0.2.1",
        "X-Runyard-Client-Signature": "t=1,v1=00",
        "X-Forwarded-For": "192.0.2.2",
    }
    async with start_gateway() as client:
        await client.get("/api/v1/experiments", headers={**auth_headers, **forged})
    async with start_gateway(trusted_proxies="127.0.0.0/8") as client:
        await client.get("/api/v1/experiments", headers={**auth_headers, **forged})
    direct, proxied = (upstream_headers(r) for r in experiments_upstream.requests)
    assert verified_client_address(SECRET, direct) == "127.0.0.1"
    assert verified_client_address(SECRET, proxied) == "192.0.2.2"


async def test_recovery_routes_need_no_login_and_are_limited_per_client(
    start_gateway, auth_upstream
) -> None:
    async with start_gateway(rate_limit_login_per_ip_per_minute=len(RECOVERY_ROUTES)) as client:
        answers = [await client.post(path, json={}) for path in RECOVERY_ROUTES]
        refused = await client.post(RECOVERY_ROUTES[0], json={})
    assert [a.status_code for a in answers] == [200] * len(RECOVERY_ROUTES)
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    forwarded = [r for r in auth_upstream.requests if r["raw_path"] in RECOVERY_ROUTES]
    assert len(forwarded) == len(RECOVERY_ROUTES)
    assert all(
        verified_client_address(SECRET, upstream_headers(r)) == "127.0.0.1" for r in forwarded
    )


async def test_an_ipv6_client_rotating_through_its_64_shares_one_bucket(
    start_gateway, auth_upstream
) -> None:
    async with start_gateway(
        trusted_proxies="127.0.0.0/8", rate_limit_login_per_ip_per_minute=2
    ) as client:
        rotating = [
            await client.post(
                "/api/v1/auth/login", json={}, headers={"X-Forwarded-For": f"2001:db8:5:6::{i}"}
            )
            for i in range(1, 4)
        ]
        next_64 = await client.post(
            "/api/v1/auth/login", json={}, headers={"X-Forwarded-For": "2001:db8:5:7::1"}
        )
    assert [a.status_code for a in rotating] == [200, 200, 429]
    assert next_64.status_code == 200
