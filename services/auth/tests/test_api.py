from __future__ import annotations

import asyncio
import uuid

import jwt

from runyard.shared.testing import identity_headers
from services.auth.tests.auth_helpers import (
    API_KEYS,
    LOGIN,
    PASSWORD,
    REGISTER,
    SESSIONS,
    USERS,
    as_user,
    create_key,
    execute,
    fetch,
    from_client,
    make_admin,
    outbox_events,
    register,
    tokens_for,
)


async def test_registered_user_logs_in_and_token_verifies_against_jwks(client, db) -> None:
    user = await register(client, "ada")
    assert (user["username"], user["role"], user["is_active"], user["timezone"]) == (
        "ada",
        "user",
        True,
        "UTC",
    )

    login = await client.post(
        LOGIN,
        json={"login": "ADA", "password": PASSWORD},
        headers={"User-Agent": "pytest", **from_client("203.0.113.7")},
    )
    assert login.status_code == 200, login.text
    body = login.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 900
    assert body["refresh_expires_in"] == 30 * 24 * 3600
    assert len(body["refresh_token"]) >= 43

    jwks = await client.get("/api/v1/auth/.well-known/jwks.json")
    [jwk] = jwks.json()["keys"]
    assert {k: jwk[k] for k in ("kty", "crv", "alg", "use")} == {
        "kty": "OKP",
        "crv": "Ed25519",
        "alg": "EdDSA",
        "use": "sig",
    }
    assert jwt.get_unverified_header(body["access_token"])["kid"] == jwk["kid"]
    claims = jwt.decode(
        body["access_token"],
        key=jwt.PyJWK(jwk).key,
        algorithms=["EdDSA"],
        audience="runyard-api",
        issuer="runyard",
    )
    assert claims["sub"] == user["id"]
    assert claims["role"] == "user"
    assert claims["preferred_username"] == "ada"
    assert claims["typ"] == "access"
    assert claims["exp"] - claims["iat"] == 900

    [event] = await outbox_events(db, "login.succeeded")
    assert event["key"] == user["id"]
    assert event["data"]["session_id"] == claims["sid"]
    assert event["data"]["ip_address"] == "203.0.113.7"
    [history] = await fetch(db, "SELECT * FROM auth.login_history")
    assert (history["success"], str(history["user_id"]), history["ip_address"]) == (
        True,
        user["id"],
        "203.0.113.7",
    )
    assert history["user_agent"] == "pytest"
    assert str(history["session_id"]) == claims["sid"]
    [session] = await fetch(db, "SELECT * FROM auth.session_logs")
    assert (str(session["id"]), str(session["user_id"]), session["ip_address"]) == (
        claims["sid"],
        user["id"],
        "203.0.113.7",
    )
    assert body["refresh_token"] not in session["session_token"]


async def test_user_logs_in_with_email_in_any_case(client) -> None:
    await register(client, "grace", email="Grace@Example.org")
    login = await client.post(LOGIN, json={"login": "grace@EXAMPLE.org", "password": PASSWORD})
    assert login.status_code == 200, login.text


async def test_registration_writes_user_registered_event_with_payload(client, db) -> None:
    user = await register(client, "ada")
    [event] = await outbox_events(db, "user.registered")
    assert event["topic"] == "user.registered"
    assert event["key"] == user["id"]
    assert event["source"] == "/runyard/auth"
    assert event["dataschema"] == "urn:runyard:user.registered:1"
    assert event["sequence"] == "1"
    assert event["data"] == {
        "user_id": user["id"],
        "username": "ada",
        "email": "ada@example.org",
        "role": "user",
        "is_active": True,
        "timezone": "UTC",
        "full_name": None,
    }


async def test_username_taken_in_another_case_is_409_and_writes_nothing(client, db) -> None:
    await register(client, "ada")
    events = await outbox_events(db)
    again = await client.post(
        REGISTER, json={"username": "ADA", "email": "other@example.org", "password": PASSWORD}
    )
    assert again.status_code == 409
    assert again.headers["content-type"] == "application/problem+json"
    assert again.json()["fields"] == ["username"]
    assert len(await fetch(db, "SELECT id FROM auth.users")) == 1
    assert await outbox_events(db) == events


async def test_concurrent_registrations_of_one_name_give_one_user_and_one_409(client, db) -> None:
    responses = await asyncio.gather(
        *(
            client.post(
                REGISTER,
                json={"username": name, "email": f"{i}@example.org", "password": PASSWORD},
            )
            for i, name in enumerate(["Twin", "twin", "TWIN"])
        )
    )
    assert sorted(r.status_code for r in responses) == [201, 409, 409]
    assert len(await fetch(db, "SELECT id FROM auth.users")) == 1
    assert len(await outbox_events(db, "user.registered")) == 1


async def test_short_password_is_422_and_creates_no_user(client, db) -> None:
    bad = await client.post(
        REGISTER, json={"username": "ada", "email": "ada@example.org", "password": "short pass"}
    )
    assert bad.status_code == 422
    assert bad.headers["content-type"] == "application/problem+json"
    assert [e["loc"] for e in bad.json()["errors"]] == [["body", "password"]]
    assert await fetch(db, "SELECT id FROM auth.users") == []
    assert await outbox_events(db) == []


async def test_malformed_username_and_email_are_422(client) -> None:
    bad = await client.post(
        REGISTER, json={"username": "a b", "email": "not-an-email", "password": PASSWORD}
    )
    assert bad.status_code == 422
    assert sorted(e["loc"][-1] for e in bad.json()["errors"]) == ["email", "username"]


async def test_wrong_password_and_unknown_user_get_identical_401_bodies(client) -> None:
    await register(client, "ada")
    wrong = await client.post(LOGIN, json={"login": "ada", "password": "not the password"})
    unknown = await client.post(LOGIN, json={"login": "nobody", "password": "not the password"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.headers["content-type"] == unknown.headers["content-type"]
    assert wrong.headers["content-type"] == "application/problem+json"
    assert wrong.json() == unknown.json()


async def test_failed_logins_are_recorded_and_count_consecutive_failures(client, db) -> None:
    user = await register(client, "ada")
    for _ in range(2):
        response = await client.post(
            LOGIN,
            json={"login": "ada", "password": "not the password"},
            headers={"User-Agent": "x"},
        )
        assert response.status_code == 401

    history = await fetch(db, "SELECT * FROM auth.login_history ORDER BY created_at")
    assert [(str(h["user_id"]), h["success"], h["failure_reason"]) for h in history] == [
        (user["id"], False, "invalid_password"),
        (user["id"], False, "invalid_password"),
    ]
    events = await outbox_events(db, "login.failed")
    assert [e["data"]["consecutive_failures"] for e in events] == [1, 2]
    assert {e["data"]["user_id"] for e in events} == {user["id"]}
    assert events[0]["data"]["username_attempted"] == "ada"
    assert events[0]["data"]["reason"] == "invalid_password"
    assert events[0]["data"]["user_agent"] == "x"
    [row] = await fetch(db, "SELECT failed_login_attempts FROM auth.users")
    assert row["failed_login_attempts"] == 2


async def test_successful_login_resets_failure_count(client, db) -> None:
    await register(client, "ada")
    await client.post(LOGIN, json={"login": "ada", "password": "not the password"})
    ok = await client.post(LOGIN, json={"login": "ada", "password": PASSWORD})
    assert ok.status_code == 200
    [row] = await fetch(db, "SELECT failed_login_attempts, last_login_at FROM auth.users")
    assert row["failed_login_attempts"] == 0
    assert row["last_login_at"] is not None


async def test_unknown_user_login_is_recorded_without_user_id(client, db) -> None:
    response = await client.post(LOGIN, json={"login": "nobody", "password": "whatever"})
    assert response.status_code == 401
    [history] = await fetch(db, "SELECT * FROM auth.login_history")
    assert (history["user_id"], history["username_attempted"], history["failure_reason"]) == (
        None,
        "nobody",
        "unknown_user",
    )
    [event] = await outbox_events(db, "login.failed")
    assert event["data"]["user_id"] is None
    assert event["data"]["consecutive_failures"] == 0


async def test_deactivated_user_gets_the_same_401(client, db) -> None:
    await register(client, "ada")
    await execute(db, "UPDATE auth.users SET is_active = false")
    inactive = await client.post(LOGIN, json={"login": "ada", "password": PASSWORD})
    unknown = await client.post(LOGIN, json={"login": "nobody", "password": PASSWORD})
    assert inactive.status_code == 401
    assert inactive.json() == unknown.json()
    reasons = [h["failure_reason"] for h in await fetch(db, "SELECT * FROM auth.login_history")]
    assert "inactive_user" in reasons


async def test_me_returns_the_caller(client) -> None:
    user = await register(client, "ada")
    me = await client.get("/api/v1/auth/me", headers=identity_headers(uuid.UUID(user["id"])))
    assert me.status_code == 200
    assert me.json() == user


async def test_me_without_identity_is_401(client) -> None:
    assert (await client.get("/api/v1/auth/me")).status_code == 401


async def test_an_invalid_cursor_is_a_400_invalid_cursor_on_every_list(client, db) -> None:
    user = await register(client, "ada")
    admin = await make_admin(client, db)
    for _ in range(2):
        await tokens_for(client, "ada")
    sessions_cursor = (
        await client.get(SESSIONS, params={"limit": 1}, headers=as_user(user))
    ).json()["next_cursor"]
    assert sessions_cursor is not None
    key = await create_key(client, user)
    lists = [
        (SESSIONS, user),
        ("/api/v1/auth/login-history", user),
        (API_KEYS, user),
        (f"{API_KEYS}/{key.json()['id']}/usage", user),
        (USERS, admin),
    ]
    for path, caller in lists:
        for cursor in ("not-a-cursor", "eyJrIjoidXNlcnMiLCJ2IjpbXX0", sessions_cursor):
            if path == SESSIONS and cursor == sessions_cursor:
                continue
            response = await client.get(path, params={"cursor": cursor}, headers=as_user(caller))
            assert response.status_code == 400, (path, cursor, response.text)
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["title"] == "Invalid cursor"
