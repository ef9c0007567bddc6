"""Account recovery and email ownership across the stack: auth publishes the link's public
handle, notifications derives the token and mails it, the owner follows it through the gateway."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from runyard.devstack import Stack

from .helpers import User, link_token, take_mail

pytestmark = pytest.mark.e2e

#: GATEWAY_SESSION_CACHE_S defaults to 5 s
CACHE_S = 5.0
NEW_PASSWORD = "a brand new passphrase"


async def test_a_forgotten_password_is_reset_by_the_mailed_link_and_every_session_ends(
    stack: Stack, api: httpx.AsyncClient, user: User
) -> None:
    known = await api.post("/api/v1/auth/password-reset", json={"email": user.email})
    unknown = await api.post(
        "/api/v1/auth/password-reset", json={"email": f"nobody-{user.username}@example.test"}
    )
    assert known.status_code == unknown.status_code == 202
    assert known.json() == unknown.json()

    mail = await take_mail(stack.mail_dir, user.email, "Reset your Runyard password")
    confirmed = await api.post(
        "/api/v1/auth/password-reset/confirm",
        json={"token": link_token(mail), "password": NEW_PASSWORD},
    )
    assert confirmed.status_code == 204, confirmed.text

    await take_mail(stack.mail_dir, user.email, "The password of your Runyard account was changed")
    await asyncio.sleep(CACHE_S + 0.5)
    assert (await api.get("/api/v1/auth/me", headers=user.auth)).status_code == 401
    old = await api.post(
        "/api/v1/auth/login", json={"login": user.username, "password": user.password}
    )
    assert old.status_code == 401
    new = await api.post(
        "/api/v1/auth/login", json={"login": user.username, "password": NEW_PASSWORD}
    )
    assert new.status_code == 200, new.text


async def test_a_new_address_counts_once_its_link_is_followed_and_the_old_one_is_told(
    stack: Stack, api: httpx.AsyncClient, user: User
) -> None:
    new_address = f"{user.username}.new@example.test"
    changed = await api.patch(
        "/api/v1/auth/me",
        json={"email": new_address, "current_password": user.password},
        headers=user.auth,
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["email"] == user.email

    mail = await take_mail(stack.mail_dir, new_address, "Confirm your new Runyard email address")
    verified = await api.post("/api/v1/auth/verify-email", json={"token": link_token(mail)})
    assert verified.status_code == 204, verified.text

    told = await take_mail(
        stack.mail_dir, user.email, "The email address of your Runyard account was changed"
    )
    assert new_address in str(told.get_body(preferencelist=("plain",)).get_content())
    me = await api.get("/api/v1/auth/me", headers=user.auth)
    assert me.json()["email"] == new_address
