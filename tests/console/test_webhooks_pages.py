"""The webhooks pages in headless Chromium against the whole stack and a receiver the test
runs: an endpoint is created (its secret shown once and used by the receiver to check
signatures), a delivery arrives on the open page with the receiver's answer, a test send, a
rotated secret, retry and switching the endpoint off. axe-core checks each page; screenshots
under ``.data/console-screenshots/``."""

from __future__ import annotations

import time

import httpx
import pytest
from playwright.sync_api import Page, expect

from runyard.devstack import Stack

from .conftest import sign_in
from .helpers import (
    Account,
    as_user,
    assert_accessible,
    new_experiment,
    screenshot,
    webhook_receiver,
)

pytestmark = pytest.mark.console


def test_an_endpoint_is_created_and_its_signed_deliveries_show_up_on_its_page(
    stack: Stack, page: Page, api: httpx.Client, user: Account
) -> None:
    base = stack.gateway_url
    with webhook_receiver() as receiver:
        sign_in(page, base, user)
        page.goto(f"{base}/webhooks")
        assert_accessible(page)
        page.fill("#new-webhook input[name=name]", "lab receiver")
        page.select_option("#new-webhook select[name=provider_type]", "generic")
        page.fill("#new-webhook input[name=url]", receiver.url)
        expect(page.locator("#new-webhook input[value='experiment.*']")).to_be_checked()
        page.click("#new-webhook button[type=submit]")
        secret = page.input_value("#new-secret")
        assert secret.startswith("whsec_")
        receiver.secret = secret
        screenshot(page, "30-webhook-created")
        page.reload()  # shown once: never again
        expect(page.locator("#new-secret")).to_have_count(0)
        page.click("#webhooks >> text=lab receiver")
        expect(page.locator("#webhook-state")).to_have_text("on")

        # an event of the user's: its delivery appears on the open page with the answer
        new_experiment(api, user, "hooked run")
        delivery = page.locator(".delivery[data-status='succeeded']")
        expect(delivery).to_have_count(1, timeout=30_000)
        expect(delivery).to_contain_text("experiment.created")
        expect(delivery.locator(".attempt-code")).to_have_text("200")
        expect(delivery.locator("pre.body")).to_have_text("signature valid")
        assert [r.signature_valid for r in receiver.received] == [True]
        delivery.locator("summary").click()
        assert_accessible(page)
        screenshot(page, "31-webhook-deliveries")

        # a test send: what the endpoint answered
        page.click("#send-test")
        expect(page.locator("#test-result")).to_contain_text("delivered")
        expect(page.locator("#test-result")).to_contain_text("signature valid")

        # a new secret, shown once; the receiver switches to it and signatures still check
        page.click("#rotate-secret")
        rotated = page.input_value("#new-secret")
        assert rotated.startswith("whsec_") and rotated != secret
        receiver.secret = rotated
        page.click("#send-test")
        expect(page.locator("#test-result")).to_contain_text("signature valid")

        # send the delivery again: a second attempt, manual
        page.locator(".delivery").first.get_by_role("button", name="Retry").click()
        expect(page.locator(".notice")).to_contain_text("queued")
        expect(page.locator(".delivery .attempt")).to_have_count(2, timeout=30_000)
        expect(page.locator(".delivery .attempt").nth(1)).to_contain_text("manual_retry")

        # switched off: nothing more is delivered
        page.click("#toggle-active")
        expect(page.locator("#webhook-state")).to_have_text("off")
        assert_accessible(page)
        screenshot(page, "32-webhook-off")
        count = len(receiver.received)
        new_experiment(api, user, "unheard run")
        time.sleep(2)
        assert len(receiver.received) == count
        hooks = as_user(api, user, "GET", "/webhooks")["items"]
        assert [h["is_active"] for h in hooks] == [False]
