"""Forgotten passwords, written as the attacks: probing which addresses have accounts, flooding a
mailbox or the service, replaying or guessing links, and keeping a hijacked account's sessions
and API keys through a reset."""

from __future__ import annotations

import hashlib
import json

from runyard.auth.recovery.reset import process_reset_requests
from services.auth.tests.auth_helpers import (
    NEW_PASSWORD,
    PASSWORD,
    PASSWORD_RESET,
    PASSWORD_RESET_CONFIRM,
    VERIFY_EMAIL,
    FakeClock,
    as_user,
    create_key,
    execute,
    fetch,
    from_client,
    link_token,
    login,
    outbox_events,
    refresh,
    register,
    tokens_for,
    verify_key,
)


async def ask_reset(client, email: str, headers: dict[str, str] | None = None):
    return await client.post(PASSWORD_RESET, json={"email": email}, headers=headers)


async def reset_link(client, app, db, email: str = "ada@example.org") -> str:
    """Ask for a reset of ``email``, let the worker act, and return the mailed token."""
    assert (await ask_reset(client, email)).status_code == 202
    await process_reset_requests(app.state.runtime)
    event = (await outbox_events(db, "password_reset.requested"))[-1]
    return link_token(event)


async def confirm(client, token: str, password: str = NEW_PASSWORD):
    return await client.post(PASSWORD_RESET_CONFIRM, json={"token": token, "password": password})


async def test_known_and_unknown_addresses_get_the_same_answer_and_only_owners_a_link(
    client, app, db
) -> None:
    user = await register(client, "ada")

    known = await ask_reset(client, "ADA@example.org", from_client("203.0.113.5"))
    unknown = await ask_reset(client, "nobody@example.org", from_client("203.0.113.5"))

    assert known.status_code == unknown.status_code == 202
    assert known.content == unknown.content
    assert set(known.headers) == set(unknown.headers)
    # the request itself only records it, the same row for both
    rows = await fetch(db, "SELECT email, processed_at FROM auth.password_reset_requests")
    assert sorted(r["email"] for r in rows) == ["ADA@example.org", "nobody@example.org"]
    assert await outbox_events(db, "password_reset.requested") == []

    assert await process_reset_requests(app.state.runtime) == 2
    [event] = await outbox_events(db, "password_reset.requested")
    assert event["key"] == user["id"]
    data = event["data"]
    assert (data["user_id"], data["email"], data["ip_address"]) == (
        user["id"],
        "ada@example.org",
        "203.0.113.5",
    )
    rows = await fetch(db, "SELECT email, processed_at FROM auth.password_reset_requests")
    assert all(r["email"] is None and r["processed_at"] is not None for r in rows)


async def test_the_token_is_in_no_event_and_no_table_only_its_hash_is(client, app, db) -> None:
    await register(client, "ada")
    token = await reset_link(client, app, db)

    [row] = await fetch(
        db, "SELECT token_hash, expires_at, created_at FROM auth.password_reset_tokens"
    )
    assert row["token_hash"] == hashlib.sha256(token.encode()).hexdigest()
    assert (row["expires_at"] - row["created_at"]).total_seconds() == 1800
    outbox = json.dumps([r["payload"] for r in await fetch(db, "SELECT payload FROM auth.outbox")])
    assert token not in outbox
    tables = await fetch(
        db,
        "SELECT string_agg(t::text, '') AS dump FROM auth.password_reset_tokens t "
        "UNION ALL SELECT string_agg(r::text, '') FROM auth.password_reset_requests r",
    )
    assert all(token not in (t["dump"] or "") for t in tables)


async def test_a_reset_sets_the_password_once_and_leaves_the_hijacker_no_session_or_key(
    client, app, db
) -> None:
    user = await register(client, "ada")
    hijacker = await tokens_for(client, "ada")
    key = (await create_key(client, user)).json()["key"]
    await client.patch(
        "/api/v1/auth/me",
        json={"email": "mallory@evil.example", "current_password": PASSWORD},
        headers=as_user(user),
    )
    token = await reset_link(client, app, db)

    assert (await confirm(client, token)).status_code == 204

    assert (await login(client, "ada", PASSWORD)).status_code == 401
    assert (await login(client, "ada", NEW_PASSWORD)).status_code == 200
    assert (await refresh(client, hijacker["refresh_token"])).status_code == 401
    assert (await verify_key(client, key)).status_code == 401
    pending = await fetch(
        db, "SELECT used_at FROM auth.email_verifications WHERE purpose = 'change'"
    )
    assert [r["used_at"] is not None for r in pending] == [True]  # the hijacker's change is off
    assert {e["data"]["reason"] for e in await outbox_events(db, "session.revoked")} == {
        "password_reset"
    }
    assert len(await outbox_events(db, "api_key.revoked")) == 1
    [changed] = await outbox_events(db, "password.changed")
    assert (changed["data"]["reason"], changed["data"]["user_id"]) == ("reset", user["id"])

    replayed = await confirm(client, token, "another fine passphrase")
    assert replayed.status_code == 400
    assert replayed.headers["content-type"] == "application/problem+json"
    assert (await login(client, "ada", NEW_PASSWORD)).status_code == 200


async def test_every_older_link_dies_with_the_first_reset(client, app, db) -> None:
    await register(client, "ada")
    first = await reset_link(client, app, db)
    second = await reset_link(client, app, db)
    assert first != second
    assert (await confirm(client, second)).status_code == 204
    assert (await confirm(client, first, "another fine passphrase")).status_code == 400
    assert (await login(client, "ada", NEW_PASSWORD)).status_code == 200


async def test_an_expired_forged_or_foreign_token_is_refused_and_changes_nothing(
    client, app, clock: FakeClock, db
) -> None:
    await register(client, "ada")
    token = await reset_link(client, app, db)
    [signup] = await outbox_events(db, "email_verification.requested")
    hashes = await fetch(db, "SELECT password_hash FROM auth.users")

    for bad in (token[:-1] + ("A" if token[-1] != "A" else "B"), link_token(signup), "x" * 43):
        refused = await confirm(client, bad)
        assert refused.status_code == 400, bad
        assert refused.json()["detail"] == "The password reset link is invalid or has expired."
    clock.advance(1801)
    assert (await confirm(client, token)).status_code == 400

    assert await fetch(db, "SELECT password_hash FROM auth.users") == hashes
    assert await outbox_events(db, "password.changed") == []


async def test_a_refused_new_password_changes_nothing_and_the_link_still_works(
    client, app, db
) -> None:
    await register(client, "ada")
    token = await reset_link(client, app, db)

    for weak in ("password1234", "ada@example.org", "short"):
        response = await confirm(client, token, weak)
        assert response.status_code == 422, weak
        assert response.headers["content-type"] == "application/problem+json"
    assert (await login(client, "ada", PASSWORD)).status_code == 200
    assert (await confirm(client, token)).status_code == 204


async def test_deactivated_accounts_get_no_link(client, app, db) -> None:
    user = await register(client, "ada")
    await execute(db, "UPDATE auth.users SET is_active = false WHERE id = $1::uuid", user["id"])
    assert (await ask_reset(client, "ada@example.org")).status_code == 202
    await process_reset_requests(app.state.runtime)
    assert await outbox_events(db, "password_reset.requested") == []


async def test_requests_are_limited_per_address_the_same_whether_it_has_an_account_or_not(
    client, app, clock: FakeClock, db
) -> None:
    await register(client, "ada")
    for address in ("ada@example.org", "nobody@example.org"):
        # a different client each time: only the per-address limit applies
        answers = [
            await ask_reset(client, address, from_client(f"198.51.100.{i}")) for i in range(4)
        ]
        assert [a.status_code for a in answers] == [202, 202, 202, 429]
        assert answers[3].headers["content-type"] == "application/problem+json"
        assert answers[3].headers["retry-after"] == "3600"
    refused = await ask_reset(client, "ADA@example.org", from_client("192.0.2.9"))
    other = await ask_reset(client, "nobody@example.org", from_client("192.0.2.9"))
    assert refused.content == other.content

    await process_reset_requests(app.state.runtime)
    assert len(await outbox_events(db, "password_reset.requested")) == 3  # no mail flood
    clock.advance(3600)
    assert (await ask_reset(client, "ada@example.org")).status_code == 202


async def test_requests_are_limited_per_client_and_an_ipv6_client_per_64(
    client, settings, clock: FakeClock, db
) -> None:
    limit = settings.password_reset_max_per_client
    rotating = [from_client(f"2001:db8:7:1::{i:x}") for i in range(limit + 1)]
    answers = [
        await ask_reset(client, f"probe{i}@example.org", headers)
        for i, headers in enumerate(rotating)
    ]
    assert [a.status_code for a in answers] == [202] * limit + [429]
    next_network = await ask_reset(client, "probe@example.org", from_client("2001:db8:7:2::1"))
    assert next_network.status_code == 202
    keys = await fetch(db, "SELECT DISTINCT client_key FROM auth.password_reset_requests")
    assert sorted(r["client_key"] for r in keys) == ["2001:db8:7:1::/64", "2001:db8:7:2::/64"]


async def test_a_verification_token_is_no_reset_token_and_the_other_way_round(
    client, app, db
) -> None:
    await register(client, "ada")
    reset_token = await reset_link(client, app, db)
    assert (await client.post(VERIFY_EMAIL, json={"token": reset_token})).status_code == 400
    assert (await confirm(client, reset_token)).status_code == 204
