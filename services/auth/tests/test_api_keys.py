from __future__ import annotations

import hashlib
import re
import uuid
import zlib
from datetime import timedelta

from runyard.auth import tokens
from runyard.auth.consumers import HANDLERS
from runyard.shared.contracts.gateway import ApiKeyUsed
from runyard.shared.db import create_engine, create_sessionmaker
from runyard.shared.events import CloudEvent
from runyard.shared.inbox import EventConsumer
from runyard.shared.testing.events import as_record, contract_event
from services.auth.tests.auth_helpers import (
    API_KEYS,
    USERS,
    FakeClock,
    as_user,
    create_key,
    execute,
    fetch,
    make_admin,
    outbox_events,
    register,
    verify_key,
)

KEY_FORMAT = re.compile(r"^ry_[0-9A-Za-z]{30}[0-9A-Za-z]{6}$")


def test_keys_are_ry_prefix_30_base62_random_chars_and_a_crc32_checksum() -> None:
    key = tokens.new_api_key()
    assert KEY_FORMAT.match(key)
    random_part, checksum = key[3:33], key[33:]
    assert checksum == tokens.base62(zlib.crc32(random_part.encode()), 6)
    assert tokens.is_well_formed_api_key(key)
    assert len({tokens.new_api_key() for _ in range(100)}) == 100


def test_a_changed_character_breaks_the_checksum() -> None:
    key = tokens.new_api_key()
    flipped = key[:10] + ("A" if key[10] != "A" else "B") + key[11:]
    assert not tokens.is_well_formed_api_key(flipped)
    assert not tokens.is_well_formed_api_key(key[:-1])
    assert not tokens.is_well_formed_api_key("gh_" + key[3:])
    assert not tokens.is_well_formed_api_key(key[:20] + "!" + key[21:])


async def test_a_created_key_is_shown_once_and_only_its_sha256_is_stored(client, db) -> None:
    user = await register(client, "ada")
    response = await create_key(client, user, scopes=["experiments:read", "webhooks:write"])
    assert response.status_code == 201, response.text
    created = response.json()
    key = created["key"]
    assert KEY_FORMAT.match(key)
    assert created["prefix"] == key[:11]
    assert created["scopes"] == ["experiments:read", "webhooks:write"]

    [row] = await fetch(db, "SELECT * FROM auth.api_keys")
    assert row["key_hash"] == hashlib.sha256(key.encode()).hexdigest()
    assert not any(key in str(value) for value in dict(row).values())
    listed = (await client.get(API_KEYS, headers=as_user(user))).json()["items"]
    assert [k["id"] for k in listed] == [created["id"]]
    assert "key" not in listed[0]
    [event] = await outbox_events(db, "api_key.created")
    assert key not in str(event)
    assert (event["key"], event["data"]["prefix"], event["data"]["user_id"]) == (
        created["id"],
        key[:11],
        user["id"],
    )


async def test_internal_verify_accepts_the_key_and_says_who_it_acts_for(client) -> None:
    user = await register(client, "ada")
    created = (
        await create_key(
            client,
            user,
            scopes=["experiments:write"],
            rate_limit=600,
            expires_at="2099-01-01T00:00:00Z",
        )
    ).json()
    response = await verify_key(client, created["key"])
    assert response.status_code == 200
    assert response.json() == {
        "key_id": created["id"],
        "user_id": user["id"],
        "username": "ada",
        "role": "user",
        "scopes": ["experiments:write"],
        "rate_limit": 600,
        "expires_at": "2099-01-01T00:00:00Z",
    }


async def test_revoked_key_is_rejected_by_internal_verify(client, db) -> None:
    user = await register(client, "ada")
    created = (await create_key(client, user)).json()
    response = await client.delete(f"{API_KEYS}/{created['id']}", headers=as_user(user))
    assert response.status_code == 204
    rejected = await verify_key(client, created["key"])
    assert rejected.status_code == 401
    assert rejected.headers["content-type"] == "application/problem+json"
    [event] = await outbox_events(db, "api_key.revoked")
    assert event["data"] == {
        "key_id": created["id"],
        "user_id": user["id"],
        "prefix": created["prefix"],
    }
    again = await client.delete(f"{API_KEYS}/{created['id']}", headers=as_user(user))
    assert again.status_code == 204
    assert len(await outbox_events(db, "api_key.revoked")) == 1
    listed = (await client.get(API_KEYS, headers=as_user(user))).json()["items"]
    assert listed[0]["is_active"] is False
    assert listed[0]["revoked_at"] is not None


async def test_expired_key_is_rejected(client, clock: FakeClock) -> None:
    user = await register(client, "ada")
    expires = clock.now() + timedelta(hours=1)
    created = (await create_key(client, user, expires_at=expires.isoformat())).json()
    assert (await verify_key(client, created["key"])).status_code == 200
    clock.advance(3600)
    assert (await verify_key(client, created["key"])).status_code == 401


async def test_key_of_a_deactivated_user_is_rejected(client, db) -> None:
    admin = await make_admin(client, db)
    user = await register(client, "ada")
    created = (await create_key(client, user)).json()
    await client.patch(f"{USERS}/{user['id']}", json={"is_active": False}, headers=as_user(admin))
    assert (await verify_key(client, created["key"])).status_code == 401


async def test_malformed_unknown_and_unsigned_verifications_are_401(client) -> None:
    user = await register(client, "ada")
    created = (await create_key(client, user)).json()
    unknown = tokens.new_api_key()
    # its last character changed (to "0", or to "1" when it is a "0": one key in 62 ends so)
    altered = created["key"][:-1] + ("1" if created["key"].endswith("0") else "0")
    for key in ("nonsense", unknown, altered):
        assert (await verify_key(client, key)).status_code == 401, key
    unsigned = await client.post("/internal/v1/api-keys/verify", json={"key": created["key"]})
    assert unsigned.status_code == 401


async def test_scopes_are_limited_by_the_owners_role(client, db) -> None:
    admin = await make_admin(client, db)
    user = await register(client, "ada")
    viewer = await register(client, "vera")
    await execute(db, "UPDATE auth.users SET role = 'viewer' WHERE username = 'vera'")

    assert (await create_key(client, user, scopes=["admin"])).status_code == 403
    denied = await client.post(
        API_KEYS,
        json={"name": "w", "scopes": ["experiments:read", "experiments:write"]},
        headers=as_user(viewer, role="viewer"),
    )
    assert denied.status_code == 403
    assert denied.json()["scopes"] == ["experiments:write"]
    assert (await create_key(client, admin, scopes=["admin"])).status_code == 201
    assert (
        await fetch(db, "SELECT id FROM auth.api_keys WHERE 'experiments:write' = ANY(scopes)")
        == []
    )


async def test_effective_scopes_shrink_when_the_owner_is_demoted(client, db) -> None:
    admin = await make_admin(client, db)
    user = await register(client, "ada")
    created = (
        await create_key(client, user, scopes=["experiments:read", "experiments:write"])
    ).json()
    await client.patch(f"{USERS}/{user['id']}", json={"role": "viewer"}, headers=as_user(admin))
    identity = (await verify_key(client, created["key"])).json()
    assert (identity["role"], identity["scopes"]) == ("viewer", ["experiments:read"])


async def test_bad_scopes_expiry_and_rate_limit_are_422(client) -> None:
    user = await register(client, "ada")
    for body in (
        {"scopes": ["datasets:read"]},
        {"scopes": []},
        {"scopes": ["admin", "admin"]},
        {"expires_at": "2001-01-01T00:00:00Z"},
        {"rate_limit": 0},
    ):
        response = await create_key(client, user, **body)
        assert response.status_code == 422, body


async def test_other_users_keys_are_404_but_admins_may_revoke_them(client, db) -> None:
    admin = await make_admin(client, db)
    ada = await register(client, "ada")
    bob = await register(client, "bob")
    created = (await create_key(client, ada)).json()
    for method, path in (("DELETE", ""), ("GET", "/usage")):
        response = await client.request(
            method, f"{API_KEYS}/{created['id']}{path}", headers=as_user(bob)
        )
        assert response.status_code == 404
    assert (await client.get(API_KEYS, headers=as_user(bob))).json()["items"] == []
    response = await client.delete(f"{API_KEYS}/{created['id']}", headers=as_user(admin))
    assert response.status_code == 204


async def test_api_keys_cannot_create_or_revoke_api_keys(client) -> None:
    user = await register(client, "ada")
    response = await client.post(
        API_KEYS,
        json={"name": "x", "scopes": ["experiments:read"]},
        headers=as_user(user, auth_method="api_key"),
    )
    assert response.status_code == 403


def used(key_id: str, user_id: str, *, status: int = 200, seconds: int = 0) -> CloudEvent:
    event = contract_event(
        ApiKeyUsed(
            key_id=uuid.UUID(key_id),
            user_id=uuid.UUID(user_id),
            method="GET",
            route="/api/v1/experiments",
            status=status,
            latency_ms=12.5,
            ip_address="10.20.3.17",
        ),
        subject=key_id,
    )
    return event.model_copy(update={"time": event.time + timedelta(seconds=seconds)})


async def test_api_key_used_events_fill_usage_and_last_used_at_once_each(client, db) -> None:
    user = await register(client, "ada")
    created = (await create_key(client, user)).json()
    engine = create_engine(db.url, pool_size=1)
    try:
        consumer = EventConsumer(
            sessionmaker=create_sessionmaker(engine, schema="auth"),
            producer=None,  # type: ignore[arg-type]  # only dead-lettering would use it
            bootstrap_servers=[],
            group_id="auth",
            schema="auth",
            service="auth",
            handlers=HANDLERS,
        )
        late = used(created["id"], user["id"], status=201, seconds=5)
        early = used(created["id"], user["id"], status=404)
        records = [as_record(e, i) for i, e in enumerate([late, early, late])]
        assert await consumer.process_batch(records) == ["processed", "processed", "duplicate"]
        unknown_key = used(str(uuid.uuid4()), user["id"])
        assert await consumer.process(as_record(unknown_key, 3)) == "processed"
    finally:
        await engine.dispose()

    response = await client.get(f"{API_KEYS}/{created['id']}/usage", headers=as_user(user))
    assert response.status_code == 200
    usage = response.json()
    assert usage["total_requests"] == 2
    assert [i["status_code"] for i in usage["items"]] == [201, 404]
    assert usage["items"][0] == {
        "timestamp": late.time.isoformat().replace("+00:00", "Z"),
        "method": "GET",
        "endpoint": "/api/v1/experiments",
        "status_code": 201,
        "response_time_ms": 12.5,
        "ip_address": "10.20.3.17",
    }
    assert usage["last_used_at"] == usage["items"][0]["timestamp"]
    listed = (await client.get(API_KEYS, headers=as_user(user))).json()["items"]
    assert listed[0]["last_used_at"] == usage["last_used_at"]


async def test_usage_is_paged_newest_first(client, db) -> None:
    user = await register(client, "ada")
    created = (await create_key(client, user)).json()
    engine = create_engine(db.url, pool_size=1)
    try:
        sessionmaker = create_sessionmaker(engine, schema="auth")
        for i in range(3):
            event = used(created["id"], user["id"], status=200 + i, seconds=i)
            async with sessionmaker() as session, session.begin():
                await HANDLERS[event.type](session, event, event.payload())
    finally:
        await engine.dispose()
    path = f"{API_KEYS}/{created['id']}/usage"
    first = (await client.get(path, params={"limit": 2}, headers=as_user(user))).json()
    assert [i["status_code"] for i in first["items"]] == [202, 201]
    rest = await client.get(
        path, params={"limit": 2, "cursor": first["next_cursor"]}, headers=as_user(user)
    )
    assert [i["status_code"] for i in rest.json()["items"]] == [200]
    assert rest.json()["total_requests"] == 3
