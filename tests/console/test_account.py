"""The account links of emails, followed in the console against the whole stack: a forgotten
password reset from the emailed link in headless Chromium, a verification link (sign-up and an
email change), and over HTTP what a forged form or an address prober meets."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import Page, expect

from runyard.devstack import Stack

from .conftest import sign_in
from .helpers import (
    PASSWORD,
    Account,
    account_link,
    as_user,
    register,
    screenshot,
    take_mail,
)

pytestmark = pytest.mark.console

RESET_SUBJECT = "Reset your Runyard password"
VERIFY_SUBJECT = "Verify your Runyard email address"
CHANGE_SUBJECT = "Confirm your new Runyard email address"
NEW_PASSWORD = "a brand new passphrase for ada"


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF field in the form"
    return found[1]


def test_a_forgotten_password_is_reset_from_the_emailed_link_and_the_new_one_signs_in(
    stack: Stack, page: Page, api: httpx.Client, user: Account
) -> None:
    base = stack.gateway_url

    # asked for from the sign-in page
    page.goto(f"{base}/login")
    page.click("#forgot-password")
    page.wait_for_url(f"{base}/account/forgot-password")
    page.fill("input[name=email]", user.email)
    page.click("button[type=submit]")
    expect(page.locator("#reset-sent")).to_contain_text("If an account uses this address")

    # the emailed link opens the page; its module takes the token out of the address bar
    link = account_link(take_mail(stack.mail_dir, user.email, RESET_SUBJECT))
    assert link.startswith(f"{base}/account/reset-password#token=")
    page.goto(link)
    expect(page.locator("form[data-token-read='true']")).to_be_attached()
    expect(page).to_have_url(f"{base}/account/reset-password")
    screenshot(page, "10-reset-password")

    # a password the policy refuses: the API's reason is shown, the link still works
    page.fill("input[name=password]", "iloveyou2024!!")
    page.fill("input[name=password_confirmation]", "iloveyou2024!!")
    page.click("button[type=submit]")
    expect(page.locator("#account-error")).to_contain_text("password: is too common")

    page.fill("input[name=password]", NEW_PASSWORD)
    page.fill("input[name=password_confirmation]", NEW_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/login?notice=password-reset")
    expect(page.locator("#login-notice")).to_contain_text("new password is set")

    old = api.post("/api/v1/auth/login", json={"login": user.username, "password": user.password})
    assert old.status_code == 401
    sign_in(page, base, Account(user.username, NEW_PASSWORD, token=""))
    expect(page).to_have_url(f"{base}/experiments")

    # the link was spent: opened again, it says so and offers a new one
    page.goto(link)
    page.fill("input[name=password]", NEW_PASSWORD + " again")
    page.fill("input[name=password_confirmation]", NEW_PASSWORD + " again")
    page.click("button[type=submit]")
    expect(page.locator("#account-error")).to_contain_text("invalid or has expired")
    expect(page.locator("a[href='/account/forgot-password']")).to_be_visible()


def test_verification_links_verify_the_address_and_complete_an_email_change(
    stack: Stack, page: Page, api: httpx.Client, user: Account
) -> None:
    base = stack.gateway_url
    assert as_user(api, user, "GET", "/auth/me")["email_verified_at"] is None

    link = account_link(take_mail(stack.mail_dir, user.email, VERIFY_SUBJECT))
    assert link.startswith(f"{base}/account/verify-email#token=")
    page.goto(link)  # the module posts the token at once
    expect(page.locator("#email-verified")).to_contain_text("Your email address is verified")
    expect(page).to_have_url(f"{base}/account/verify-email")
    assert as_user(api, user, "GET", "/auth/me")["email_verified_at"] is not None
    screenshot(page, "11-email-verified")

    # an email change takes effect when the link sent to the new address is followed
    new_email = f"new.{user.email}"
    as_user(
        api,
        user,
        "PATCH",
        "/auth/me",
        json={"email": new_email, "current_password": user.password},
    )
    change = account_link(take_mail(stack.mail_dir, new_email, CHANGE_SUBJECT))
    page.goto("about:blank")  # a link opens a new page, not a fragment change of this one
    page.goto(change)
    expect(page.locator("#email-verified")).to_be_visible()
    assert as_user(api, user, "GET", "/auth/me")["email"] == new_email

    # a link followed twice: the API's refusal, as it states it
    page.goto("about:blank")
    page.goto(change)
    expect(page.locator("#account-error")).to_contain_text(
        "The verification link is invalid or has expired."
    )


def test_a_forged_reset_form_changes_nothing_and_the_link_still_works_for_its_owner(
    stack: Stack, api: httpx.Client
) -> None:
    ada = register(api, "ada")
    asked = api.post("/api/v1/auth/password-reset", json={"email": ada.email})
    assert asked.status_code == 202, asked.text
    token = account_link(take_mail(stack.mail_dir, ada.email, RESET_SUBJECT)).split("#token=")[1]
    attack = {"token": token, "password": NEW_PASSWORD, "password_confirmation": NEW_PASSWORD}

    with httpx.Client(base_url=stack.gateway_url, timeout=30.0, trust_env=False) as browser:
        valid = csrf_of(browser.get("/account/reset-password").text)
        forged = browser.post("/account/reset-password", data={**attack, "csrf_token": "forged"})
        cross_site = browser.post(
            "/account/reset-password",
            data={**attack, "csrf_token": valid},
            headers={"origin": "https://evil.example"},
        )
        still = api.post("/api/v1/auth/login", json={"login": ada.username, "password": PASSWORD})
        done = browser.post("/account/reset-password", data={**attack, "csrf_token": valid})

    assert forged.status_code == 403 and cross_site.status_code == 403
    assert still.status_code == 200, "a refused form changed the password"
    assert done.status_code == 303 and done.headers["location"] == "/login?notice=password-reset"
    fresh = api.post("/api/v1/auth/login", json={"login": ada.username, "password": NEW_PASSWORD})
    assert fresh.status_code == 200


def test_asking_for_a_reset_answers_alike_for_an_account_and_for_nobody(
    stack: Stack, api: httpx.Client
) -> None:
    ada = register(api, "ada")

    with httpx.Client(base_url=stack.gateway_url, timeout=30.0, trust_env=False) as prober:
        token = csrf_of(prober.get("/account/forgot-password").text)
        known = prober.post(
            "/account/forgot-password", data={"email": ada.email, "csrf_token": token}
        )
        unknown = prober.post(
            "/account/forgot-password",
            data={"email": f"nobody.{ada.email}", "csrf_token": token},
        )

    assert known.status_code == unknown.status_code == 200
    assert known.text == unknown.text
    assert "If an account uses this address" in known.text
    assert take_mail(stack.mail_dir, ada.email, RESET_SUBJECT)  # only the account is mailed
