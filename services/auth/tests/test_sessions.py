from __future__ import annotations

import uuid

from services.auth.tests.auth_helpers import (
    LOGOUT,
    ME,
    NEW_PASSWORD,
    PASSWORD,
    REFRESH,
    SESSIONS,
    USERS,
    FakeClock,
    as_user,
    fetch,
    from_client,
    login,
    make_admin,
    outbox_events,
    register,
    session_of,
    session_status,
    tokens_for,
)

FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)


async def refresh(client, token: str):
    return await client.post(REFRESH, json={"refresh_token": token})


async def test_refresh_rotates_both_tokens_within_the_same_session(client, db) -> None:
    await register(client, "ada")
    first = await tokens_for(client, "ada")

    response = await refresh(client, first["refresh_token"])
    assert response.status_code == 200, response.text
    second = response.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert session_of(second["access_token"]) == session_of(first["access_token"])
    assert (await refresh(client, second["refresh_token"])).status_code == 200

    [row] = await fetch(db, "SELECT session_token FROM auth.session_logs")
    assert first["refresh_token"] not in row["session_token"]
    assert len(await fetch(db, "SELECT token_hash FROM auth.rotated_refresh_tokens")) == 2


async def test_reusing_a_rotated_refresh_token_revokes_the_session(client, db) -> None:
    user = await register(client, "ada")
    first = await tokens_for(client, "ada")
    second = (await refresh(client, first["refresh_token"])).json()

    reused = await refresh(client, first["refresh_token"])
    assert reused.status_code == 401
    assert reused.headers["content-type"] == "application/problem+json"
    assert (await refresh(client, second["refresh_token"])).status_code == 401

    [event] = await outbox_events(db, "session.revoked")
    sid = session_of(first["access_token"])
    assert event["key"] == sid
    assert event["data"] == {
        "session_id": sid,
        "user_id": user["id"],
        "reason": "refresh_token_reused",
    }
    status = (await session_status(client, sid)).json()
    assert (status["active"], status["user_active"]) == (False, True)


async def test_unknown_refresh_token_is_401_and_changes_nothing(client, db) -> None:
    await register(client, "ada")
    await tokens_for(client, "ada")
    assert (await refresh(client, "not-a-token")).status_code == 401
    assert await outbox_events(db, "session.revoked") == []


async def test_refresh_token_expires_after_thirty_days(client, clock: FakeClock) -> None:
    await register(client, "ada")
    tokens = await tokens_for(client, "ada")
    clock.advance(30 * 24 * 3600 - 1)
    renewed = await refresh(client, tokens["refresh_token"])
    assert renewed.status_code == 200
    clock.advance(30 * 24 * 3600)
    assert (await refresh(client, renewed.json()["refresh_token"])).status_code == 401


async def test_logout_ends_the_session_of_the_refresh_token(client, db) -> None:
    user = await register(client, "ada")
    tokens = await tokens_for(client, "ada")
    response = await client.post(
        LOGOUT, json={"refresh_token": tokens["refresh_token"]}, headers=as_user(user)
    )
    assert response.status_code == 204
    assert (await refresh(client, tokens["refresh_token"])).status_code == 401
    [event] = await outbox_events(db, "session.revoked")
    assert event["data"]["reason"] == "logout"
    [row] = await fetch(db, "SELECT is_active, logged_out_at FROM auth.session_logs")
    assert row["is_active"] is False
    assert row["logged_out_at"] is not None


async def test_logout_without_a_token_ends_the_session_the_gateway_names(client) -> None:
    user = await register(client, "ada")
    tokens = await tokens_for(client, "ada")
    response = await client.post(LOGOUT, headers=as_user(user, tokens=tokens))
    assert response.status_code == 204
    assert (await refresh(client, tokens["refresh_token"])).status_code == 401


async def test_logout_with_nothing_to_name_a_session_is_422(client) -> None:
    user = await register(client, "ada")
    assert (await client.post(LOGOUT, headers=as_user(user))).status_code == 422


async def test_logout_cannot_end_another_users_session(client) -> None:
    ada = await register(client, "ada")
    await register(client, "bob")
    bobs = await tokens_for(client, "bob")
    response = await client.post(
        LOGOUT, json={"refresh_token": bobs["refresh_token"]}, headers=as_user(ada)
    )
    assert response.status_code == 204
    assert (await refresh(client, bobs["refresh_token"])).status_code == 200


async def test_sessions_list_device_browser_address_and_the_current_one(client) -> None:
    user = await register(client, "ada")
    desktop = await tokens_for(
        client, "ada", headers={"User-Agent": FIREFOX, **from_client("203.0.113.24")}
    )
    phone = await tokens_for(client, "ada", headers={"User-Agent": IPHONE})

    response = await client.get(SESSIONS, headers=as_user(user, tokens=desktop))
    assert response.status_code == 200
    items = {item["id"]: item for item in response.json()["items"]}
    mine = items[session_of(desktop["access_token"])]
    assert (mine["device_type"], mine["browser"], mine["os"], mine["ip_address"]) == (
        "desktop",
        "Firefox 133.0",
        "Linux",
        "203.0.113.24",
    )
    assert mine["current"] is True
    other = items[session_of(phone["access_token"])]
    assert (other["device_type"], other["browser"], other["current"]) == (
        "mobile",
        "Mobile Safari 17.5",
        False,
    )
    assert response.json()["next_cursor"] is None


async def test_sessions_are_paged_newest_first(client, clock: FakeClock) -> None:
    user = await register(client, "ada")
    sids = []
    for _ in range(3):
        sids.append(session_of((await tokens_for(client, "ada"))["access_token"]))
        clock.advance(1)
    first = (await client.get(SESSIONS, params={"limit": 2}, headers=as_user(user))).json()
    assert [i["id"] for i in first["items"]] == sids[::-1][:2]
    second = await client.get(
        SESSIONS, params={"limit": 2, "cursor": first["next_cursor"]}, headers=as_user(user)
    )
    assert [i["id"] for i in second.json()["items"]] == [sids[0]]
    assert second.json()["next_cursor"] is None


async def test_revoking_a_session_kills_its_refresh_token_at_once(client, db) -> None:
    user = await register(client, "ada")
    tokens = await tokens_for(client, "ada")
    sid = session_of(tokens["access_token"])

    response = await client.delete(f"{SESSIONS}/{sid}", headers=as_user(user))
    assert response.status_code == 204
    assert (await refresh(client, tokens["refresh_token"])).status_code == 401
    assert (await session_status(client, sid)).json()["active"] is False
    [event] = await outbox_events(db, "session.revoked")
    assert event["data"]["reason"] == "revoked"
    listed = await client.get(SESSIONS, headers=as_user(user))
    assert listed.json()["items"] == []
    everything = await client.get(
        SESSIONS, params={"include_inactive": "true"}, headers=as_user(user)
    )
    assert [i["revoked_reason"] for i in everything.json()["items"]] == ["revoked"]


async def test_another_users_session_is_404(client) -> None:
    ada = await register(client, "ada")
    await register(client, "bob")
    bobs = await tokens_for(client, "bob")
    response = await client.delete(
        f"{SESSIONS}/{session_of(bobs['access_token'])}", headers=as_user(ada)
    )
    assert response.status_code == 404
    assert (await refresh(client, bobs["refresh_token"])).status_code == 200


async def test_password_change_ends_every_other_session_but_the_current(client, db) -> None:
    user = await register(client, "ada")
    current = await tokens_for(client, "ada")
    other = await tokens_for(client, "ada")

    response = await client.patch(
        ME,
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=as_user(user, tokens=current),
    )
    assert response.status_code == 200, response.text
    assert (await refresh(client, other["refresh_token"])).status_code == 401
    assert (await refresh(client, current["refresh_token"])).status_code == 200
    [event] = await outbox_events(db, "session.revoked")
    assert (event["key"], event["data"]["reason"]) == (
        session_of(other["access_token"]),
        "password_changed",
    )


async def test_internal_session_check_reports_the_session_and_the_user(client) -> None:
    user = await register(client, "ada")
    tokens = await tokens_for(client, "ada")
    response = await session_status(client, session_of(tokens["access_token"]))
    assert response.status_code == 200
    assert response.json() == {
        "session_id": session_of(tokens["access_token"]),
        "user_id": user["id"],
        "active": True,
        "user_active": True,
        "role": "user",
        "username": "ada",
    }
    assert (await session_status(client, str(uuid.uuid4()))).status_code == 404


async def test_internal_session_check_without_the_gateways_signature_is_401(client) -> None:
    await register(client, "ada")
    sid = session_of((await tokens_for(client, "ada"))["access_token"])
    unsigned = await client.get(f"/internal/v1/sessions/{sid}")
    assert unsigned.status_code == 401
    forged = await client.get(
        f"/internal/v1/sessions/{sid}",
        headers={"X-Runyard-Internal-Signature": "t=1,v1=00"},
    )
    assert forged.status_code == 401


async def test_deactivated_users_sessions_end_and_their_tokens_stop_working(client, db) -> None:
    admin = await make_admin(client, db)
    user = await register(client, "ada")
    tokens = await tokens_for(client, "ada")

    response = await client.patch(
        f"{USERS}/{user['id']}", json={"is_active": False}, headers=as_user(admin)
    )
    assert response.status_code == 200
    status = (await session_status(client, session_of(tokens["access_token"]))).json()
    assert (status["active"], status["user_active"]) == (False, False)
    assert (await refresh(client, tokens["refresh_token"])).status_code == 401
    assert (await login(client, "ada")).status_code == 401
    [event] = await outbox_events(db, "session.revoked")
    assert event["data"]["reason"] == "user_deactivated"


async def test_login_history_lists_my_attempts_newest_first(client, clock: FakeClock) -> None:
    user = await register(client, "ada")
    await login(client, "ada", "wrong password here")
    clock.advance(1)
    await tokens_for(client, "ada", headers={"User-Agent": FIREFOX})
    response = await client.get("/api/v1/auth/login-history", headers=as_user(user))
    items = response.json()["items"]
    assert [(i["success"], i["failure_reason"]) for i in items] == [
        (True, None),
        (False, "invalid_password"),
    ]
    assert items[0]["user_agent"] == FIREFOX
    assert items[0]["session_id"] is not None
