"""Who the client is, written as the attack: whatever reaches auth (directly, or through anything
but the gateway) writes any ``X-Forwarded-For`` it likes, or forges the gateway's header, to
spread its failed logins over made-up addresses and never reach the per-client limit."""

from __future__ import annotations

import time

from runyard.auth.main import create_app
from runyard.shared.identity import signed_client_headers
from runyard.shared.testing import running_app
from services.auth.tests.auth_helpers import (
    DEV_SECRET,
    PASSWORD,
    FakeClock,
    fetch,
    from_client,
    login,
    register,
)


def limited(settings, failures: int = 3):
    return settings.model_copy(
        update={"login_ip_max_failures": failures, "login_ip_window_seconds": 600}
    )


async def test_a_rotating_x_forwarded_for_does_not_dodge_the_per_client_limit(
    settings, clock: FakeClock, db
) -> None:
    async with running_app(create_app(limited(settings), clock=clock)) as client:
        await register(client, "ada")
        for i in range(3):
            spoofed = {"X-Forwarded-For": f"198.51.100.{i}, 10.0.0.1"}
            assert (
                await login(client, "ada", "wrong password!", headers=spoofed)
            ).status_code == 401
        blocked = await login(client, "ada", PASSWORD, headers={"X-Forwarded-For": "192.0.2.200"})
    assert blocked.status_code == 429
    addresses = await fetch(db, "SELECT DISTINCT ip_address FROM auth.login_history")
    assert [r["ip_address"] for r in addresses] == ["127.0.0.1"]  # the TCP peer, nothing else


async def test_a_forged_or_stale_gateway_signature_is_no_address(
    settings, clock: FakeClock, db
) -> None:
    forged = dict(signed_client_headers("not-the-identity-secret", "203.0.113.1"))
    stale = dict(signed_client_headers(DEV_SECRET, "203.0.113.2", now=time.time() - 600))
    swapped = {**from_client("203.0.113.3"), "X-Runyard-Client-Address": "203.0.113.4"}
    async with running_app(create_app(limited(settings), clock=clock)) as client:
        await register(client, "ada")
        for headers in (forged, stale, swapped):
            assert (
                await login(client, "ada", "wrong password!", headers=headers)
            ).status_code == 401
        elsewhere = await login(client, "ada", PASSWORD, headers=from_client("203.0.113.5"))
        assert elsewhere.status_code == 200  # a real client elsewhere is not blocked
        assert (await login(client, "ada", PASSWORD)).status_code == 429  # the peer is
    rows = await fetch(db, "SELECT ip_address FROM auth.login_history WHERE NOT success")
    assert {r["ip_address"] for r in rows} == {"127.0.0.1"}


async def test_the_address_the_gateway_signed_is_the_client(client, db) -> None:
    await register(client, "ada")
    response = await login(client, "ada", PASSWORD, headers=from_client("2001:db8:a:b::17"))
    assert response.status_code == 200
    [row] = await fetch(db, "SELECT ip_address, client_key FROM auth.login_history")
    assert (row["ip_address"], row["client_key"]) == ("2001:db8:a:b::17", "2001:db8:a:b::/64")


async def test_an_ipv6_client_is_limited_per_64_not_per_address(settings, clock: FakeClock) -> None:
    async with running_app(create_app(limited(settings), clock=clock)) as client:
        await register(client, "ada")
        for i in range(3):
            headers = from_client(f"2001:db8:a:b:{i:x}::1")
            assert (
                await login(client, "ada", "wrong password!", headers=headers)
            ).status_code == 401
        same_64 = await login(client, "ada", PASSWORD, headers=from_client("2001:db8:a:b::ffff"))
        next_64 = await login(client, "ada", PASSWORD, headers=from_client("2001:db8:a:c::1"))
        mapped = await login(client, "ada", PASSWORD, headers=from_client("::ffff:192.0.2.8"))
    assert same_64.status_code == 429
    assert next_64.status_code == 200
    assert mapped.status_code == 200
