from __future__ import annotations

import time
import uuid
from types import SimpleNamespace

import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from runyard.shared.http import install_problem_handlers
from runyard.shared.identity import (
    CurrentPrincipal,
    Principal,
    client_network,
    signed_client_headers,
    signed_identity_headers,
    verified_client_address,
    verify_identity,
)
from runyard.shared.testing import running_app

SECRET = "the-gateway-and-services-share-this"


def signed(
    principal: Principal, *, secret: str = SECRET, now: float | None = None
) -> dict[str, str]:
    return {k.lower(): v for k, v in signed_identity_headers(secret, principal, now=now)}


def test_signed_identity_round_trips() -> None:
    principal = Principal(uuid.uuid4(), "viewer", "ada", "api_key", "key-1")
    assert verify_identity(SECRET, signed(principal)) == principal


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("x-runyard-user-role", "admin"),
        ("x-runyard-user-id", "7e09728b-16eb-42c5-97a3-fc1529e589d2"),
        ("x-runyard-username", "mallory"),
        ("x-runyard-api-key-id", "another-key"),
    ],
)
def test_any_changed_identity_field_breaks_the_signature(header: str, value: str) -> None:
    headers = signed(Principal(uuid.uuid4(), "user", "ada"))
    headers[header] = value
    with pytest.raises(Exception, match="Identity not signed by the gateway"):
        verify_identity(SECRET, headers)


def test_identity_signed_with_another_secret_is_refused() -> None:
    headers = signed(Principal(uuid.uuid4(), "user"), secret="an-attackers-guess")
    with pytest.raises(Exception, match="Identity not signed by the gateway"):
        verify_identity(SECRET, headers)


def test_old_signature_is_refused() -> None:
    headers = signed(Principal(uuid.uuid4(), "user"), now=time.time() - 3600)
    with pytest.raises(Exception, match="expired"):
        verify_identity(SECRET, headers)


async def test_service_answers_401_to_unsigned_identity_that_bypassed_the_gateway() -> None:
    app = FastAPI()
    install_problem_handlers(app)
    app.state.runtime = SimpleNamespace(settings=SimpleNamespace(identity_secret=SecretStr(SECRET)))

    @app.get("/me")
    async def me(principal: CurrentPrincipal) -> dict[str, str]:
        return {"user_id": str(principal.user_id), "role": principal.role}

    user_id = uuid.uuid4()
    async with running_app(app) as client:
        bypass = await client.get(
            "/me", headers={"X-Runyard-User-Id": str(user_id), "X-Runyard-User-Role": "admin"}
        )
        through_gateway = await client.get("/me", headers=signed(Principal(user_id, "user")))
    assert bypass.status_code == 401
    assert bypass.headers["content-type"] == "application/problem+json"
    assert through_gateway.json() == {"user_id": str(user_id), "role": "user"}


def test_a_signed_client_address_verifies_and_a_forged_stale_or_swapped_one_does_not() -> None:
    now = 1_800_000_000.0
    headers = {k.lower(): v for k, v in signed_client_headers("s3cret", "203.0.113.7", now=now)}
    assert verified_client_address("s3cret", headers, now=now + 10) == "203.0.113.7"
    assert verified_client_address("other", headers, now=now) is None
    assert verified_client_address("s3cret", headers, now=now + 301) is None
    swapped = {**headers, "x-runyard-client-address": "198.51.100.1"}
    assert verified_client_address("s3cret", swapped, now=now) is None
    assert verified_client_address("s3cret", {"x-forwarded-for": "198.51.100.1"}) is None


def test_client_networks_are_ipv4_addresses_and_ipv6_64s() -> None:
    assert client_network("203.0.113.7") == "203.0.113.7"
    assert client_network("2001:db8:1:2:aaaa::1") == "2001:db8:1:2::/64"
    assert client_network("2001:DB8:1:2:ffff:ffff:ffff:ffff") == "2001:db8:1:2::/64"
    assert client_network("::ffff:198.51.100.9") == "198.51.100.9"
    assert client_network("not an address") == "not an address"
