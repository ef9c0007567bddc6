"""The console on its own: strict CSP, CSRF refusals, sealed sessions, where an unsigned-in
browser is sent. Each attack is the request an attacker would send."""

from __future__ import annotations

import re
import time

from runyard.console.session import CSRF_COOKIE, SESSION_COOKIE, Session, Sessions
from runyard.console.web import CSP, safe_next


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF field in the form"
    return found[1]


def sealed_session(settings, **overrides) -> str:
    sessions = Sessions(settings.session_secret.get_secret_value(), max_age_s=3600)
    fields = {
        "access_token": "a",
        "refresh_token": "r",
        "user_id": "00000000-0000-0000-0000-000000000001",
        "username": "ada",
        "role": "user",
        "access_expires_at": time.time() + 900,
        **overrides,
    }
    return sessions.seal(Session(**fields))


async def test_the_sign_in_page_sends_a_strict_csp_and_no_inline_code(client) -> None:
    response = await client.get("/login")

    assert response.status_code == 200
    assert response.headers["content-security-policy"] == CSP
    assert "'unsafe-inline'" not in CSP and "'unsafe-eval'" not in CSP
    assert "frame-ancestors 'none'" in CSP
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["cache-control"] == "no-store"
    assert "<script>" not in response.text and " style=" not in response.text
    assert " on" + "click=" not in response.text


async def test_static_files_and_the_vendored_chart_library_come_from_the_console(client) -> None:
    uplot = await client.get("/static/vendor/uplot-1.6.32/uPlot.iife.min.js")
    licence = await client.get("/static/vendor/uplot-1.6.32/LICENSE")

    assert uplot.status_code == 200 and "uPlot" in uplot.text
    assert "MIT License" in licence.text
    assert uplot.headers["content-security-policy"] == CSP


async def test_a_login_post_without_the_forms_csrf_token_is_refused_before_the_api_is_asked(
    client,
) -> None:
    await client.get("/login")  # the browser has its CSRF cookie
    response = await client.post(
        "/login", data={"login": "ada", "password": "x", "csrf_token": "forged"}
    )

    assert response.status_code == 403
    assert "Form expired" in response.text
    assert SESSION_COOKIE not in response.headers.get("set-cookie", "")


async def test_a_cross_site_login_post_is_refused_even_with_a_valid_token(client) -> None:
    token = csrf_of((await client.get("/login")).text)
    response = await client.post(
        "/login",
        data={"login": "ada", "password": "x", "csrf_token": token},
        headers={"origin": "https://evil.example"},
    )

    assert response.status_code == 403


async def test_a_token_from_another_browsers_cookie_does_not_pass(client, settings) -> None:
    token = csrf_of((await client.get("/login")).text)
    client.cookies.set(CSRF_COOKIE, "another-browsers-nonce")

    response = await client.post(
        "/login", data={"login": "a", "password": "x", "csrf_token": token}
    )

    assert response.status_code == 403


async def test_a_signed_in_post_without_the_sessions_token_is_refused(client, settings) -> None:
    client.cookies.set(SESSION_COOKIE, sealed_session(settings, csrf="the-real-token"))

    forged = await client.post("/logout", data={"csrf_token": "guessed"})
    missing = await client.post("/experiments/00000000-0000-0000-0000-000000000002/cancel")

    assert forged.status_code == 403
    assert missing.status_code == 403


async def test_without_a_session_a_page_sends_the_browser_to_sign_in_and_back(client) -> None:
    response = await client.get("/experiments?filter=status%20%3D%20%27running%27")

    assert response.status_code == 303
    assert (
        response.headers["location"]
        == "/login?next=/experiments%3Ffilter%3Dstatus%2520%253D%2520%2527running%2527"
    )


async def test_a_script_without_a_session_gets_a_401_naming_where_to_sign_in(client) -> None:
    response = await client.get(
        "/console-api/unread-count", headers={"x-console-page": "/experiments/abc"}
    )

    assert response.status_code == 401
    assert response.json()["login"] == "/login?next=/experiments/abc"


async def test_a_tampered_or_forged_session_cookie_is_no_session(client, settings) -> None:
    good = sealed_session(settings)
    tampered = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    other_key = Sessions("another-secret", max_age_s=3600).seal(
        Session("a", "r", "00000000-0000-0000-0000-000000000001", "eve", "admin")
    )

    for cookie in (tampered, other_key, "not even base64 !"):
        client.cookies.set(SESSION_COOKIE, cookie)
        response = await client.get("/experiments")
        assert response.status_code == 303, cookie
        assert response.headers["location"].startswith("/login")


async def test_an_expired_sealed_session_is_no_session(settings) -> None:
    sessions = Sessions(settings.session_secret.get_secret_value(), max_age_s=-1)
    sealed = sessions.seal(Session("a", "r", "u", "ada", "user"))

    assert sessions.open(sealed) is None


async def test_the_session_cookie_never_holds_a_readable_token(settings) -> None:
    sealed = sealed_session(settings, access_token="eyJhbGciOiJFZERTQSJ9.secret-access")

    assert "secret-access" not in sealed and "eyJ" not in sealed


def test_after_sign_in_the_browser_only_goes_to_a_page_of_this_site() -> None:
    assert safe_next("/experiments/1?x=2") == "/experiments/1?x=2"
    for evil in ("https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:x"):
        assert safe_next(evil) == "/experiments", evil


async def test_an_unknown_page_is_a_404_page(client) -> None:
    response = await client.get("/no/such/page")

    assert response.status_code == 404
    assert "Not found" in response.text
    assert response.headers["content-security-policy"] == CSP


async def test_a_form_sent_after_the_session_ended_returns_to_the_page_it_came_from(
    client,
) -> None:
    response = await client.post(
        "/experiments/00000000-0000-0000-0000-000000000002/notes",
        data={"notes": "x"},
        headers={"referer": "http://testserver/experiments/00000000-0000-0000-0000-000000000002"},
    )

    assert response.status_code == 303
    assert response.headers["location"] == (
        "/login?next=/experiments/00000000-0000-0000-0000-000000000002"
    )
