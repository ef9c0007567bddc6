"""The console over HTTP through the gateway, against the whole stack: what an attacker or an
expired session meets."""

from __future__ import annotations

import contextlib
import re
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from runyard.devstack import Stack

from .helpers import Account, as_user, new_experiment, register

pytestmark = pytest.mark.console


@contextlib.contextmanager
def signed_in_browser(stack: Stack, account: Account) -> Iterator[httpx.Client]:
    """A cookie-keeping client that signed in through the console's form, as a browser does."""
    with httpx.Client(base_url=stack.gateway_url, timeout=30.0, trust_env=False) as browser:
        yield sign_in_with_form(browser, account)


def sign_in_with_form(browser: httpx.Client, account: Account) -> httpx.Client:
    form = browser.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert token
    signed = browser.post(
        "/login",
        data={"login": account.username, "password": account.password, "csrf_token": token[1]},
    )
    assert signed.status_code == 303, signed.text
    assert signed.headers["location"] == "/experiments"
    cookie = signed.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie.replace("Lax", "lax")
    return browser


def page_csrf(browser: httpx.Client, path: str) -> str:
    token = re.search(r'name="csrf-token" content="([^"]+)"', browser.get(path).text)
    assert token
    return token[1]


def test_another_users_experiment_is_a_404_page_and_its_history_a_404(
    stack: Stack, api: httpx.Client
) -> None:
    ada, eve = register(api, "ada"), register(api, "eve")
    secret = new_experiment(api, ada, "ada's secret run", notes="the recipe")

    with signed_in_browser(stack, eve) as browser:
        page = browser.get(f"/experiments/{secret}")
        history = browser.get(f"/console-api/experiments/{secret}/history")
        cancel = browser.post(
            f"/experiments/{secret}/cancel",
            data={"csrf_token": page_csrf(browser, "/experiments")},
        )

    assert page.status_code == 404
    assert "the recipe" not in page.text and "secret run" not in page.text
    assert history.status_code == 404
    assert cancel.status_code == 404
    assert as_user(api, ada, "GET", f"/experiments/{secret}")["status"] == "pending"


def test_a_signed_in_form_posted_without_its_csrf_token_changes_nothing(
    stack: Stack, api: httpx.Client
) -> None:
    ada = register(api, "ada")
    run = new_experiment(api, ada, "keep me running")

    with signed_in_browser(stack, ada) as browser:
        forged = browser.post(f"/experiments/{run}/cancel", data={"csrf_token": "forged"})
        cross_site = browser.post(
            f"/experiments/{run}/cancel",
            data={"csrf_token": page_csrf(browser, "/experiments")},
            headers={"origin": "https://evil.example"},
        )

    assert forged.status_code == 403 and cross_site.status_code == 403
    assert as_user(api, ada, "GET", f"/experiments/{run}")["status"] == "pending"


def test_pages_through_the_gateway_carry_the_consoles_strict_csp(stack: Stack) -> None:
    response = httpx.get(f"{stack.gateway_url}/login", trust_env=False)

    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp
    assert "frame-ancestors 'none'" in csp


def test_a_session_ended_elsewhere_sends_the_browser_to_sign_in_and_back_to_its_page(
    stack: Stack, api: httpx.Client
) -> None:
    ada = register(api, "ada")
    run = new_experiment(api, ada, "where I was")

    with signed_in_browser(stack, ada) as browser:
        assert browser.get(f"/experiments/{run}").status_code == 200
        # every session of the user ends (a password change elsewhere, an admin, a logout)
        for session in as_user(api, ada, "GET", "/auth/sessions")["items"]:
            api.delete(
                f"/api/v1/auth/sessions/{session['id']}",
                headers={"Authorization": f"Bearer {ada.token}"},
            )
        # the gateway may reuse a session's state for GATEWAY_SESSION_CACHE_S (5 s)
        deadline = time.monotonic() + 30
        while (again := browser.get(f"/experiments/{run}?tab=charts")).status_code == 200:
            assert time.monotonic() < deadline, "the ended session still shows pages"
            time.sleep(0.5)

    assert again.status_code == 303
    assert again.headers["location"] == f"/login?next=/experiments/{run}%3Ftab%3Dcharts"


def test_saved_searches_chosen_columns_and_keyset_pages(stack: Stack, api: httpx.Client) -> None:
    ada = register(api, "ada")
    for n in range(55):
        new_experiment(
            api,
            ada,
            f"run {n:02d}",
            model_type="cnn1d" if n % 5 == 0 else "lstm",
            hyperparameters={"lr": n / 1000},
        )

    with signed_in_browser(stack, ada) as browser:
        saved = browser.post(
            "/saved-searches",
            data={
                "csrf_token": page_csrf(browser, "/experiments"),
                "name": "cnn only",
                "filter": "model_type = 'cnn1d'",
            },
        )
        listed = browser.get("/experiments?cols=params.lr")
        remembered = browser.get("/experiments")
        first = browser.get("/experiments?order_by=name")
        next_url = re.search(r'href="([^"]+)" rel="next"', first.text)
        assert next_url
        second = browser.get(next_url[1].replace("&amp;", "&"))

    assert saved.status_code == 303
    assert [s["name"] for s in as_user(api, ada, "GET", "/saved-searches")["items"]] == ["cnn only"]
    assert "cnn only" in listed.text
    assert ">params.lr<" in listed.text and ">0.054<" in listed.text
    assert ">params.lr<" in remembered.text  # the column choice is kept
    assert first.text.count('data-experiment="') == 50
    assert second.text.count('data-experiment="') == 5
    assert "run 54" in second.text and "run 00" not in second.text


def test_registering_through_the_console_signs_the_new_user_in_to_an_empty_table(
    stack: Stack, api: httpx.Client
) -> None:
    name = f"new{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=stack.gateway_url, timeout=30.0, trust_env=False) as browser:
        form = browser.get("/register")
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert token
        taken = browser.post(
            "/register",
            data={
                "username": name,
                "email": "not-an-email",
                "password": "correct horse battery staple",
                "csrf_token": token[1],
            },
        )
        created = browser.post(
            "/register",
            data={
                "username": name,
                "email": f"{name}@example.test",
                "password": "correct horse battery staple",
                "csrf_token": token[1],
            },
        )
        table = browser.get("/experiments")

    assert taken.status_code == 400 and "email" in taken.text
    assert created.status_code == 303 and created.headers["location"] == "/experiments"
    assert table.status_code == 200 and "No experiments yet" in table.text
    login = api.post(
        "/api/v1/auth/login", json={"login": name, "password": "correct horse battery staple"}
    )
    assert login.status_code == 200
