"""Account and security pages in headless Chromium against the whole stack: the profile and a
new password, 2FA enrolled from the QR page's key (the code computed here, RFC 6238 via pyotp)
then a sign-in with a code, sessions and sign-in history, and an API key created, used (its use
counted and charted) and revoked. axe-core checks each page; screenshots under
``.data/console-screenshots/``."""

from __future__ import annotations

import time

import httpx
import pytest
from playwright.sync_api import Page, expect

from runyard.devstack import Stack

from .conftest import sign_in
from .helpers import Account, assert_accessible, screenshot, totp_code

pytestmark = pytest.mark.console


def test_two_factor_is_enrolled_from_the_qr_page_and_then_signs_in_with_a_code(
    stack: Stack, page: Page, api: httpx.Client, user: Account
) -> None:
    base = stack.gateway_url
    sign_in(page, base, user)

    page.goto(f"{base}/account")
    expect(page.locator("#username")).to_have_text(user.username)
    page.fill("#profile-form input[name=full_name]", "Ada Lovelace")
    page.click("#profile-form button[type=submit]")
    expect(page.locator(".notice")).to_have_text("Profile saved.")
    expect(page.locator("#profile-form input[name=full_name]")).to_have_value("Ada Lovelace")
    # a new password: refused with a wrong current one, kept with the right one
    page.fill("#password-form input[name=current_password]", "not the password")
    page.fill("#password-form input[name=new_password]", "a brand new passphrase")
    page.fill("#password-form input[name=new_password_confirmation]", "a brand new passphrase")
    page.click("#password-form button[type=submit]")
    expect(page.locator("#password-error")).to_be_visible()
    page.fill("#password-form input[name=current_password]", user.password)
    page.fill("#password-form input[name=new_password]", "a brand new passphrase")
    page.fill("#password-form input[name=new_password_confirmation]", "a brand new passphrase")
    page.click("#password-form button[type=submit]")
    expect(page.locator(".notice")).to_contain_text("Password changed")
    user.password = "a brand new passphrase"
    assert_accessible(page)
    screenshot(page, "40-account-profile")

    page.click("nav.subnav >> text=Security")
    expect(page.locator("#tfa-state")).to_contain_text("off")
    expect(page.locator("#sessions tr[data-current='true']")).to_have_count(1)
    assert_accessible(page)
    page.click("#tfa-setup")
    qr = page.locator("#tfa-qr")
    assert (qr.get_attribute("src") or "").startswith("data:image/svg+xml")
    assert page.evaluate("() => document.getElementById('tfa-qr').naturalWidth") > 0
    secret = page.inner_text("#tfa-secret").strip()
    assert_accessible(page)
    screenshot(page, "41-two-factor-setup")
    # a wrong code keeps the same key on the page
    page.fill(
        "#tfa-enable input[name=code]", "000000" if totp_code(secret) != "000000" else "111111"
    )
    page.fill("#tfa-enable input[name=current_password]", user.password)
    page.click("#tfa-enable button[type=submit]")
    expect(page.locator("#tfa-error")).to_be_visible()
    assert page.inner_text("#tfa-secret").strip() == secret
    page.fill("#tfa-enable input[name=code]", totp_code(secret))
    page.fill("#tfa-enable input[name=current_password]", user.password)
    page.click("#tfa-enable button[type=submit]")
    expect(page.locator("#backup-codes li")).to_have_count(10)
    backup_codes = [c.strip() for c in page.locator("#backup-codes li").all_inner_texts()]
    expect(page.locator("#tfa-state")).to_contain_text("on")
    assert_accessible(page)
    screenshot(page, "42-two-factor-on")

    # signing in now takes a code from the same key
    page.click("#sign-out")
    page.wait_for_url("**/login**")
    user.totp_secret = secret
    sign_in(page, base, user, next_path="/account/security")
    expect(page).to_have_url(f"{base}/account/security")
    history = page.locator("#login-history tbody tr")
    expect(history.first).to_contain_text("signed in")
    assert history.count() >= 2
    # two sign-ins elsewhere (with backup codes; the new password ended the API's first
    # session): three sessions, one signed out by its button, then every other one at once
    for code in backup_codes[:2]:
        other = api.post(
            "/api/v1/auth/login",
            json={"login": user.username, "password": user.password, "totp_code": code},
        )
        assert other.status_code == 200, other.text
    page.reload()
    sessions = page.locator("#sessions tbody tr")
    expect(sessions).to_have_count(3)
    sessions.locator("button").first.click()
    expect(page.locator("#security-notice")).to_have_text("The session has ended.")
    expect(sessions).to_have_count(2)
    page.click("#revoke-others")
    expect(page.locator("#security-notice")).to_have_text("1 other session ended.")
    expect(page.locator("#sessions tbody tr")).to_have_count(1)
    screenshot(page, "43-sessions")


def test_an_api_key_is_created_shown_once_counted_charted_and_revoked(
    stack: Stack, page: Page, api: httpx.Client, user: Account
) -> None:
    base = stack.gateway_url
    sign_in(page, base, user)
    page.goto(f"{base}/account/api-keys")
    assert_accessible(page)
    form = page.locator("#new-key-form")
    form.locator("input[name=name]").fill("training box")
    expect(form.locator("input[value='experiments:read']")).to_be_checked()
    form.locator("input[value='experiments:write']").check()
    form.locator("input[name=expires_in_days]").fill("30")
    form.locator("input[name=rate_limit]").fill("120")
    form.locator("input[name=current_password]").fill(user.password)
    form.locator("button[type=submit]").click()
    key = page.input_value("#new-key")
    assert key.startswith("ry_")
    screenshot(page, "44-api-key-created")
    row = page.locator("#keys tbody tr").first
    expect(row).to_contain_text("experiments:write")
    expect(row).to_contain_text("120/min")

    for _ in range(3):
        used = api.get("/api/v1/experiments", headers={"X-API-Key": key})
        assert used.status_code == 200, used.text
    # use is recorded from the gateway's events: the page shows it once counted
    page.click("#keys >> text=training box")
    deadline = time.monotonic() + 30
    while page.inner_text("#total-requests").strip() != "3":
        assert time.monotonic() < deadline, "the key's use was not counted"
        time.sleep(0.5)
        page.reload()
    expect(page.locator("#usage tbody tr")).to_have_count(3)
    expect(page.locator("#usage-chart[data-drawn='3'] canvas")).to_have_count(1)
    assert_accessible(page)
    screenshot(page, "45-api-key-usage")

    page.click("text=API keys >> nth=0")
    page.locator("#keys").get_by_role("button", name="Revoke key training box").click()
    expect(page.locator(".notice")).to_contain_text("revoked")
    # the gateway refuses a revoked key within seconds (it caches what keys it has checked)
    deadline = time.monotonic() + 30
    while api.get("/api/v1/experiments", headers={"X-API-Key": key}).status_code != 401:
        assert time.monotonic() < deadline, "the revoked key still works"
        time.sleep(0.5)
