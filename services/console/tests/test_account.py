"""The signed-out account pages the emails link to (forgotten password, reset link, verification
link), on the console alone. Nothing listens on the API URL here, so a request that reached the
API answers 502 ("Runyard is not answering"): a 403 or a 400 proves the console refused it
before asking the API. The whole flow with real emails is in tests/console/test_account.py."""

from __future__ import annotations

import re

import pytest

from runyard.console.session import CSRF_COOKIE, SESSION_COOKIE
from runyard.console.web import CSP

PAGES = ["/account/forgot-password", "/account/reset-password", "/account/verify-email"]
FORMS = {
    "/account/forgot-password": {"email": "ada@example.test"},
    "/account/reset-password": {
        "token": "a-token-from-the-email",
        "password": "a brand new passphrase",
        "password_confirmation": "a brand new passphrase",
    },
    "/account/verify-email": {"token": "a-token-from-the-email"},
}


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF field in the form"
    return found[1]


@pytest.mark.parametrize("path", PAGES)
async def test_the_account_pages_send_the_strict_csp_and_carry_no_inline_code(client, path) -> None:
    response = await client.get(path)

    assert response.status_code == 200
    assert response.headers["content-security-policy"] == CSP
    assert response.headers["cache-control"] == "no-store"
    assert "<script>" not in response.text and " style=" not in response.text
    assert " on" + "click=" not in response.text and " on" + "load=" not in response.text
    assert csrf_of(response.text)
    assert CSRF_COOKIE in response.headers["set-cookie"]
    assert "HttpOnly" in response.headers["set-cookie"]


@pytest.mark.parametrize("path", ["/account/reset-password", "/account/verify-email"])
async def test_the_link_pages_read_the_token_with_the_consoles_own_module(client, path) -> None:
    html = (await client.get(path)).text
    module = await client.get("/static/js/account.js")

    assert '<script type="module" src="/static/js/account.js"></script>' in html
    assert 'data-link-token="' in html and 'name="token"' in html
    assert module.status_code == 200 and "location.hash" in module.text
    assert "history.replaceState" in module.text  # the token leaves the address bar
    assert module.headers["content-security-policy"] == CSP


async def test_a_token_in_the_query_string_is_never_read_into_the_page(client) -> None:
    """Only the fragment stays out of logs; a ``?token=`` link must not work, so none is made."""
    response = await client.get("/account/reset-password?token=leaked-into-access-logs")

    assert response.status_code == 200
    assert "leaked-into-access-logs" not in response.text


@pytest.mark.parametrize("path", list(FORMS))
async def test_an_account_form_without_its_csrf_token_is_refused_before_the_api_is_asked(
    client, path
) -> None:
    await client.get(path)  # the browser holds its CSRF cookie

    missing = await client.post(path, data=FORMS[path])
    forged = await client.post(path, data={**FORMS[path], "csrf_token": "forged"})

    assert missing.status_code == 403 and forged.status_code == 403
    assert "Form expired" in forged.text
    assert SESSION_COOKIE not in forged.headers.get("set-cookie", "")


@pytest.mark.parametrize("path", list(FORMS))
async def test_a_cross_site_account_form_is_refused_even_with_a_valid_token(client, path) -> None:
    token = csrf_of((await client.get(path)).text)

    response = await client.post(
        path, data={**FORMS[path], "csrf_token": token}, headers={"origin": "https://evil.example"}
    )

    assert response.status_code == 403


@pytest.mark.parametrize("path", list(FORMS))
async def test_a_token_made_for_another_browsers_cookie_does_not_pass(client, path) -> None:
    """The attacker's own page gives them a valid pair; it is worthless with the victim's
    cookie."""
    token = csrf_of((await client.get(path)).text)
    client.cookies.set(CSRF_COOKIE, "the-victims-nonce")

    response = await client.post(path, data={**FORMS[path], "csrf_token": token})

    assert response.status_code == 403


@pytest.mark.parametrize("path", list(FORMS))
async def test_with_its_csrf_token_an_account_form_does_ask_the_api(client, path) -> None:
    """The counterpart of the refusals above: the token is what stood in the way."""
    token = csrf_of((await client.get(path)).text)

    response = await client.post(path, data={**FORMS[path], "csrf_token": token})

    assert response.status_code == 502
    assert "Runyard is not answering" in response.text


async def test_two_different_passwords_are_refused_before_the_api_is_asked(client) -> None:
    token = csrf_of((await client.get("/account/reset-password")).text)

    response = await client.post(
        "/account/reset-password",
        data={
            "csrf_token": token,
            "token": "the-link-token",
            "password": "a brand new passphrase",
            "password_confirmation": "a brand new passphrase!",
        },
    )

    assert response.status_code == 400
    assert "The two passwords differ" in response.text
    assert 'value="the-link-token"' in response.text  # the link is not spent: try again


async def test_a_reset_form_without_a_token_asks_for_the_link_again(client) -> None:
    token = csrf_of((await client.get("/account/reset-password")).text)

    response = await client.post(
        "/account/reset-password",
        data={"csrf_token": token, "password": "a passphrase!", "password_confirmation": "x"},
    )

    assert response.status_code == 400
    assert "Open the link from the email again" in response.text


async def test_the_sign_in_page_links_to_forgot_password_and_shows_only_its_own_notices(
    client,
) -> None:
    plain = await client.get("/login")
    after_reset = await client.get("/login?notice=password-reset")
    injected = await client.get("/login?notice=%3Cb%3EYour+account+is+locked%3C%2Fb%3E")

    assert 'href="/account/forgot-password"' in plain.text
    assert "Your new password is set" in after_reset.text
    assert "locked" not in injected.text and 'id="login-notice"' not in injected.text
