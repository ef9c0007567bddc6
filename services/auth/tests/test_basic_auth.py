"""``POST /internal/v1/basic-auth``: the gateway's check of HTTP Basic credentials (MLflow's
username and password, ADR 0021). Judged like a login; every passing check gets an access token
on the user's one ``basic_auth`` session."""

from __future__ import annotations

import uuid
from typing import Any

import jwt

from runyard.shared.identity import INTERNAL_SIGNATURE_HEADER
from services.auth.tests.auth_helpers import (
    ME,
    NEW_PASSWORD,
    PASSWORD,
    REVOKE_ALL,
    SESSIONS,
    USERS,
    FakeClock,
    as_user,
    execute,
    fetch,
    from_client,
    internal,
    login,
    make_admin,
    outbox_events,
    register,
    session_status,
    tokens_for,
)

BASIC_AUTH = "/internal/v1/basic-auth"
MLFLOW_CLIENT = "mlflow-python-client/3.1 python-requests/2.32"
WRONG = "not the password"


async def check(
    client: Any,
    login_name: str = "ada",
    password: str = PASSWORD,
    *,
    address: str = "203.0.113.5",
) -> Any:
    """The gateway's call for Basic credentials a client at ``address`` sent."""
    headers = {
        **internal("POST", BASIC_AUTH),
        **from_client(address),
        "User-Agent": MLFLOW_CLIENT,
    }
    return await client.post(
        BASIC_AUTH, json={"login": login_name, "password": password}, headers=headers
    )


async def sid_of_check(client: Any, login_name: str = "ada", **kwargs: Any) -> str:
    response = await check(client, login_name, **kwargs)
    assert response.status_code == 200, response.text
    body = response.json()
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["sid"] == body["session_id"]
    sid: str = body["session_id"]
    return sid


async def sessions_of(db: Any, user: dict[str, Any]) -> list[Any]:
    return await fetch(
        db,
        "SELECT id, kind, is_active, ip_address, refresh_expires_at, revoked_reason"
        " FROM auth.session_logs WHERE user_id = $1 ORDER BY created_at",
        uuid.UUID(user["id"]),
    )


async def history(db: Any) -> list[tuple[bool, str | None]]:
    rows = await fetch(
        db, "SELECT success, failure_reason FROM auth.login_history ORDER BY created_at"
    )
    return [(r["success"], r["failure_reason"]) for r in rows]


async def test_repeated_basic_checks_reuse_one_session_and_record_one_login(
    client, db, clock: FakeClock
) -> None:
    user = await register(client, "ada")
    first = await check(client)
    assert first.status_code == 200, first.text
    assert set(first.json()) == {"access_token", "token_type", "expires_in", "session_id"}
    sids = [first.json()["session_id"]]
    for _ in range(3):  # a client whose gateway cache keeps expiring
        clock.advance(300)
        sids.append(await sid_of_check(client))
    sids.append(await sid_of_check(client, "ada@example.org"))  # the email names the same user

    assert len(set(sids)) == 1
    [row] = await sessions_of(db, user)
    assert (str(row["id"]), row["kind"], row["is_active"]) == (sids[0], "basic_auth", True)
    assert await history(db) == [(True, None)]
    [event] = await outbox_events(db, "login.succeeded")
    assert event["data"]["session_id"] == sids[0]
    listed = (await client.get(SESSIONS, headers=as_user(user))).json()["items"]
    assert [(s["id"], s["kind"], s["user_agent"]) for s in listed] == [
        (sids[0], "basic_auth", MLFLOW_CLIENT)
    ]


async def test_a_page_login_keeps_its_own_session_next_to_the_basic_one(client, db) -> None:
    user = await register(client, "ada")
    basic = await sid_of_check(client)
    await tokens_for(client, "ada")
    assert await sid_of_check(client) == basic
    kinds = [r["kind"] for r in await sessions_of(db, user)]
    assert kinds == ["basic_auth", "login"]


async def test_a_check_from_another_network_is_recorded_on_the_same_session(client, db) -> None:
    user = await register(client, "ada")
    sid = await sid_of_check(client, address="203.0.113.5")
    assert await sid_of_check(client, address="198.51.100.7") == sid
    assert await sid_of_check(client, address="198.51.100.7") == sid
    [row] = await sessions_of(db, user)
    assert row["ip_address"] == "198.51.100.7"
    addresses = await fetch(
        db, "SELECT ip_address, session_id FROM auth.login_history ORDER BY created_at"
    )
    assert [(r["ip_address"], str(r["session_id"])) for r in addresses] == [
        ("203.0.113.5", sid),
        ("198.51.100.7", sid),
    ]
    assert len(await outbox_events(db, "login.succeeded")) == 2


async def test_a_wrong_basic_password_is_a_failed_login_and_counts_towards_the_lockout(
    client, db
) -> None:
    await register(client, "ada")
    await sid_of_check(client)
    for _ in range(5):
        wrong = await check(client, password=WRONG)
        assert wrong.status_code == 401
        assert wrong.json()["code"] == "invalid_credentials"
    locked = await check(client)
    assert locked.status_code == 423
    assert locked.headers["retry-after"] == "60"
    assert (await login(client, "ada", PASSWORD)).status_code == 423  # the page's login too
    assert (
        await history(db)
        == [(True, None)] + [(False, "invalid_password")] * 5 + [(False, "account_locked")] * 2
    )
    assert len(await outbox_events(db, "login.failed")) == 5
    assert len(await outbox_events(db, "account.locked")) == 1


async def test_a_passing_check_clears_the_failures_like_a_login(client, db) -> None:
    await register(client, "ada")
    for _ in range(4):
        assert (await check(client, password=WRONG)).status_code == 401
    await sid_of_check(client)
    [row] = await fetch(db, "SELECT failed_login_attempts FROM auth.users")
    assert row["failed_login_attempts"] == 0


async def test_unknown_users_get_the_same_answer_and_count_like_logins(client, db) -> None:
    unknown = await check(client, "nobody")
    assert (unknown.status_code, unknown.json()["code"]) == (401, "invalid_credentials")
    assert await history(db) == [(False, "unknown_user")]


async def test_a_revoked_basic_session_is_never_reused_the_next_check_starts_a_new_one(
    client, db
) -> None:
    user = await register(client, "ada")
    first = await sid_of_check(client)
    revoked = await client.delete(f"{SESSIONS}/{first}", headers=as_user(user))
    assert revoked.status_code == 204

    second = await sid_of_check(client)
    assert second != first
    assert (await session_status(client, first)).json()["active"] is False
    assert [(str(r["id"]), r["is_active"]) for r in await sessions_of(db, user)] == [
        (first, False),
        (second, True),
    ]
    assert await history(db) == [(True, None)] * 2


async def test_log_out_everywhere_and_a_password_change_end_the_basic_session_for_good(
    client, db
) -> None:
    user = await register(client, "ada")
    page = await tokens_for(client, "ada")
    first = await sid_of_check(client)
    ended = await client.post(
        REVOKE_ALL, json={"include_current": False}, headers=as_user(user, tokens=page)
    )
    assert ended.status_code == 200, ended.text
    second = await sid_of_check(client)
    assert second != first

    changed = await client.patch(
        ME,
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=as_user(user, tokens=page),
    )
    assert changed.status_code == 200, changed.text
    assert (await check(client)).status_code == 401  # the old password
    third = await sid_of_check(client, password=NEW_PASSWORD)
    assert third not in (first, second)
    rows = await sessions_of(db, user)
    assert [(r["kind"], r["is_active"], r["revoked_reason"]) for r in rows] == [
        ("login", True, None),
        ("basic_auth", False, "logged_out_everywhere"),
        ("basic_auth", False, "password_changed"),
        ("basic_auth", True, None),
    ]


async def test_an_expired_basic_session_is_not_reused_and_each_check_renews_it(
    client, db, clock: FakeClock, settings
) -> None:
    user = await register(client, "ada")
    ttl = settings.refresh_token_ttl_seconds
    first = await sid_of_check(client)
    clock.advance(ttl - 60)
    assert await sid_of_check(client) == first  # renewed: good for another ttl from here
    clock.advance(ttl - 60)
    assert await sid_of_check(client) == first
    clock.advance(ttl + 1)
    assert await sid_of_check(client) != first
    assert len(await sessions_of(db, user)) == 2


async def test_a_deactivated_user_is_refused(client, db) -> None:
    admin = await make_admin(client, db)
    user = await register(client, "ada")
    sid = await sid_of_check(client)
    response = await client.patch(
        f"{USERS}/{user['id']}", json={"is_active": False}, headers=as_user(admin)
    )
    assert response.status_code == 200, response.text

    refused = await check(client)
    assert (refused.status_code, refused.json()["code"]) == (401, "invalid_credentials")
    assert (await session_status(client, sid)).json()["active"] is False
    assert (await history(db))[-1] == (False, "inactive_user")


async def test_a_two_factor_account_is_refused_with_two_factor_required(client, db) -> None:
    user = await register(client, "ada")
    await execute(
        db,
        "UPDATE auth.users SET totp_enabled = true, totp_secret = 'sealed' WHERE id = $1",
        uuid.UUID(user["id"]),
    )
    refused = await check(client)
    assert (refused.status_code, refused.json()["code"]) == (401, "two_factor_required")
    wrong = await check(client, password=WRONG)
    assert wrong.json()["code"] == "invalid_credentials"
    assert await history(db) == [(False, "two_factor_required"), (False, "invalid_password")]
    assert await sessions_of(db, user) == []


async def test_an_unsigned_or_forged_check_is_401_without_a_code_and_judges_nothing(
    client, db
) -> None:
    await register(client, "ada")
    body = {"login": "ada", "password": PASSWORD}
    unsigned = await client.post(BASIC_AUTH, json=body)
    forged = await client.post(
        BASIC_AUTH, json=body, headers={INTERNAL_SIGNATURE_HEADER: "t=1,v1=00"}
    )
    for response in (unsigned, forged):
        assert response.status_code == 401
        assert "code" not in response.json()
    assert await history(db) == []
    assert await fetch(db, "SELECT id FROM auth.session_logs") == []
