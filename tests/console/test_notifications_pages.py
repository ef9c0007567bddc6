"""The notifications pages in headless Chromium against the whole stack: the inbox fills live
and is read one by one and all at once (the header badge follows), the preferences change what
the API stores, and the email log lists what was sent. Each page passes axe-core's serious and
critical rules; screenshots under ``.data/console-screenshots/``."""

from __future__ import annotations

import time

import httpx
import pytest
from playwright.sync_api import Page, expect

from runyard.devstack import Stack

from .conftest import sign_in
from .helpers import Account, as_user, assert_accessible, new_experiment, screenshot

pytestmark = pytest.mark.console


def finish_run(api: httpx.Client, user: Account, name: str) -> None:
    run = new_experiment(api, user, name)
    as_user(api, user, "POST", f"/experiments/{run}/complete")


def test_the_inbox_fills_live_is_read_and_cleared_and_preferences_are_kept(
    stack: Stack, page: Page, api: httpx.Client, user: Account
) -> None:
    base = stack.gateway_url
    # a new account's inbox has its email-verification notice: wait for it
    deadline = time.monotonic() + 30
    while not as_user(api, user, "GET", "/notifications/inbox")["items"]:
        assert time.monotonic() < deadline, "no notice of the new account in its inbox"
        time.sleep(0.2)
    sign_in(page, base, user)
    page.goto(f"{base}/notifications")
    expect(page.locator("body[data-live-connected='true']")).to_be_attached()
    items = page.locator("#inbox .inbox-item")
    expect(items).to_have_count(1)
    badge = page.locator("#unread")
    expect(badge).to_have_text("1")

    # a finished run arrives in the open inbox over the event stream, without a reload
    finish_run(api, user, "inbox run")
    expect(items).to_have_count(2, timeout=30_000)
    expect(items.first).to_contain_text("experiment.completed")
    expect(page.locator("#inbox-new")).to_be_visible()
    expect(badge).to_have_text("2")
    assert_accessible(page)
    screenshot(page, "20-inbox")

    # read one (the button), then all: the badge and the rows follow
    page.reload()
    expect(page.locator("#inbox .inbox-item.unread")).to_have_count(2)
    page.locator("#inbox .inbox-item.unread").first.get_by_role("button", name="Mark read").click()
    expect(page.locator("#inbox .inbox-item.unread")).to_have_count(1)
    expect(badge).to_have_text("1")
    page.focus("#read-all")  # keyboard only: the button is reachable and Enter sends it
    page.keyboard.press("Enter")
    expect(page.locator("#inbox .inbox-item.unread")).to_have_count(0)
    expect(badge).to_have_text("0")
    assert as_user(api, user, "GET", "/notifications/inbox/unread-count")["unread_count"] == 0
    page.goto(f"{base}/notifications?unread_only=true")
    expect(page.locator("#inbox-empty")).to_contain_text("Nothing unread")

    # preferences: completed runs by a daily digest email and not in the inbox; a time zone
    page.click("nav.subnav >> text=Preferences")
    row = page.locator("tr[data-event-type='experiment.completed']")
    row.locator("select").select_option("daily")
    row.locator("input[type=checkbox]").uncheck()
    page.click("#preferences button[type=submit]")
    expect(page.locator(".notice")).to_have_text("Preferences saved.")
    expect(row.locator("select")).to_have_value("daily")
    stored = {
        p["event_type"]: p for p in as_user(api, user, "GET", "/notifications/preferences")["items"]
    }
    completed = stored["experiment.completed"]
    assert (completed["email_enabled"], completed["email_frequency"]) == (True, "daily")
    assert completed["in_app_enabled"] is False
    page.select_option("#timezone", "Europe/Berlin")
    page.click("text=Save time zone")
    expect(page.locator(".notice")).to_have_text("Time zone saved.")
    assert as_user(api, user, "GET", "/auth/me")["timezone"] == "Europe/Berlin"
    assert_accessible(page)
    screenshot(page, "21-notification-preferences")

    # turned off in the inbox: the next finished run adds nothing there
    finish_run(api, user, "quiet run")

    # the email log: the sign-up's verification email at least
    page.click("nav.subnav >> text=Email log")
    expect(page.locator("#emails tbody tr").first).to_contain_text(user.email, timeout=30_000)
    assert_accessible(page)
    screenshot(page, "22-email-log")
    titles = [n["title"] for n in as_user(api, user, "GET", "/notifications/inbox")["items"]]
    assert not any("quiet run" in t for t in titles)
