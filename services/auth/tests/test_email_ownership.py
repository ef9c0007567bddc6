"""Email ownership, written as the attacks: finding out who is registered (by signing up or by
changing one's own address to theirs), and moving an account to an address nobody verified."""

from __future__ import annotations

from services.auth.tests.auth_helpers import (
    LOGIN,
    ME,
    PASSWORD,
    REGISTER,
    VERIFY_EMAIL,
    FakeClock,
    as_user,
    fetch,
    from_client,
    link_token,
    login,
    outbox_events,
    register,
)

RESEND = "/api/v1/auth/verify-email/resend"


async def verify(client, token: str):
    return await client.post(VERIFY_EMAIL, json={"token": token})


async def change_email(client, user, email: str):
    return await client.patch(
        ME, json={"email": email, "current_password": PASSWORD}, headers=as_user(user)
    )


async def links_to(db, email: str) -> list[dict]:
    return [
        e
        for e in await outbox_events(db, "email_verification.requested")
        if e["data"]["email"] == email
    ]


async def test_signing_up_with_a_taken_address_answers_like_a_new_account_and_tells_its_owner(
    client, db
) -> None:
    ada = await register(client, "ada")
    free = await client.post(
        REGISTER,
        json={"username": "eve", "email": "eve@example.org", "password": PASSWORD},
    )
    taken = await client.post(
        REGISTER,
        json={"username": "mallory", "email": "ADA@example.ORG", "password": PASSWORD},
        headers=from_client("203.0.113.66"),
    )

    assert free.status_code == taken.status_code == 201
    assert free.headers["content-type"] == taken.headers["content-type"]
    assert free.json().keys() == taken.json().keys()
    shown = taken.json()
    assert (shown["username"], shown["email"], shown["email_verified_at"]) == (
        "mallory",
        "ADA@example.ORG",
        None,
    )
    users = await fetch(db, "SELECT username FROM auth.users ORDER BY username")
    assert [r["username"] for r in users] == ["ada", "eve"]
    assert {e["data"]["username"] for e in await outbox_events(db, "user.registered")} == {
        "ada",
        "eve",
    }
    assert await links_to(db, "ADA@example.ORG") == []
    [attempt] = await outbox_events(db, "registration.attempted")
    assert attempt["key"] == ada["id"]
    assert attempt["data"] == {
        "user_id": ada["id"],
        "username": "ada",
        "ip_address": "203.0.113.66",
    }
    # the made-up account does not exist: nobody can log in as it
    assert (await login(client, "mallory", PASSWORD)).status_code == 401


async def test_a_new_account_gets_a_link_that_verifies_its_address_once(client, db) -> None:
    user = await register(client, "ada")
    assert user["email_verified_at"] is None
    [link] = await links_to(db, "ada@example.org")
    assert (link["key"], link["data"]["purpose"]) == (user["id"], "signup")
    token = link_token(link)
    assert token not in str(link)

    assert (await verify(client, token)).status_code == 204
    me = (await client.get(ME, headers=as_user(user))).json()
    assert me["email_verified_at"] is not None
    [verified] = await outbox_events(db, "email.verified")
    assert verified["data"] == {
        "user_id": user["id"],
        "username": "ada",
        "email": "ada@example.org",
        "previous_email": None,
    }
    again = await verify(client, token)
    assert again.status_code == 400
    assert again.headers["content-type"] == "application/problem+json"


async def test_a_new_address_counts_only_once_verified_and_the_old_address_is_told(
    client, db
) -> None:
    user = await register(client, "ada")
    response = await change_email(client, user, "ada@new.example")
    assert response.status_code == 200, response.text
    assert (response.json()["email"], response.json()["pending_email"]) == (
        "ada@example.org",
        "ada@new.example",
    )
    # nothing has moved yet: not the address, not the logins, not the read models
    assert (await login(client, "ada@new.example")).status_code == 401
    assert await outbox_events(db, "user.updated") == []
    me = (await client.get(ME, headers=as_user(user))).json()
    assert me["pending_email"] == "ada@new.example"

    [link] = await links_to(db, "ada@new.example")
    assert link["data"]["purpose"] == "change"
    assert (await verify(client, link_token(link))).status_code == 204

    me = (await client.get(ME, headers=as_user(user))).json()
    assert (me["email"], me["pending_email"]) == ("ada@new.example", None)
    assert me["email_verified_at"] is not None
    assert (await login(client, "ada@new.example")).status_code == 200
    [updated] = await outbox_events(db, "user.updated")
    assert updated["data"]["email"] == "ada@new.example"
    [told] = [e for e in await outbox_events(db, "email.verified") if e["data"]["previous_email"]]
    assert (told["data"]["email"], told["data"]["previous_email"]) == (
        "ada@new.example",
        "ada@example.org",
    )


async def test_changing_to_a_taken_address_answers_the_same_and_sends_no_link(client, db) -> None:
    ada = await register(client, "ada")
    bob = await register(client, "bob")
    free = await change_email(client, bob, "bob@new.example")
    taken = await change_email(client, ada, "BOB@example.org")

    assert free.status_code == taken.status_code == 200
    assert taken.json()["pending_email"] == "BOB@example.org"
    me = (await client.get(ME, headers=as_user(ada))).json()
    assert me["pending_email"] == "BOB@example.org"
    assert await links_to(db, "BOB@example.org") == []
    [row] = await fetch(db, "SELECT email FROM auth.users WHERE username = 'ada'")
    assert row["email"] == "ada@example.org"
    assert await outbox_events(db, "registration.attempted") == []


async def test_a_link_of_a_superseded_change_no_longer_moves_the_account(client, db) -> None:
    user = await register(client, "ada")
    await change_email(client, user, "first@new.example")
    await change_email(client, user, "second@new.example")
    [first] = await links_to(db, "first@new.example")
    [second] = await links_to(db, "second@new.example")

    assert (await verify(client, link_token(first))).status_code == 400
    assert (await verify(client, link_token(second))).status_code == 204
    [row] = await fetch(db, "SELECT email FROM auth.users")
    assert row["email"] == "second@new.example"


async def test_an_address_taken_while_the_link_waited_is_a_409_that_changes_nothing(
    client, db
) -> None:
    user = await register(client, "ada")
    await change_email(client, user, "shared@example.org")
    [link] = await links_to(db, "shared@example.org")
    await register(client, "bob", email="shared@example.org")

    response = await verify(client, link_token(link))
    assert response.status_code == 409
    [row] = await fetch(db, "SELECT email FROM auth.users WHERE username = 'ada'")
    assert row["email"] == "ada@example.org"
    assert await outbox_events(db, "user.updated") == []


async def test_an_expired_link_is_refused(client, clock: FakeClock, db) -> None:
    user = await register(client, "ada")
    [link] = await links_to(db, "ada@example.org")
    clock.advance(86_401)
    assert (await verify(client, link_token(link))).status_code == 400
    me = (await client.get(ME, headers=as_user(user))).json()
    assert me["email_verified_at"] is None


async def test_a_new_signup_link_at_most_once_a_minute_and_none_once_verified(
    client, clock: FakeClock, db
) -> None:
    user = await register(client, "ada")
    too_soon = await client.post(RESEND, headers=as_user(user))
    assert (too_soon.status_code, too_soon.headers["retry-after"]) == (429, "60")
    clock.advance(60)
    assert (await client.post(RESEND, headers=as_user(user))).status_code == 202
    links = await links_to(db, "ada@example.org")
    assert len(links) == 2
    assert (await verify(client, link_token(links[-1]))).status_code == 204
    clock.advance(60)
    assert (await client.post(RESEND, headers=as_user(user))).status_code == 409


async def test_logins_by_email_use_the_verified_address_only(client, db) -> None:
    user = await register(client, "ada")
    await change_email(client, user, "ada@new.example")
    response = await client.post(LOGIN, json={"login": "ada@example.org", "password": PASSWORD})
    assert response.status_code == 200
