"""The console in headless Chromium: sign in with 2FA, find an experiment with a filter, watch
its chart gain points while a script logs epochs through the API, compare two experiments, sign
out. A screenshot of each page is kept under ``.data/console-screenshots/``."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from playwright.sync_api import Page, expect

from runyard.devstack import Stack

from .conftest import chart_state, sign_in
from .helpers import Account, as_user, log_epochs, new_experiment, screenshot

pytestmark = pytest.mark.console


def test_a_researcher_signs_in_with_2fa_filters_watches_a_run_compares_and_signs_out(
    stack: Stack, page: Page, api: httpx.Client, two_factor_user: Account
) -> None:
    base = stack.gateway_url
    ada = two_factor_user
    cnn = new_experiment(
        api, ada, "pump cnn", model_type="cnn1d", hyperparameters={"lr": 0.001, "batch": 64}
    )
    lstm = new_experiment(
        api, ada, "pump lstm", model_type="lstm", hyperparameters={"lr": 0.0003, "batch": 64}
    )
    log_epochs(api, ada, cnn, range(0, 50))
    log_epochs(api, ada, lstm, range(0, 40))

    # signing in: the start page sends the browser to sign in, then the code step
    page.goto(f"{base}/")
    expect(page).to_have_url(f"{base}/login?next=/")
    screenshot(page, "01-sign-in")
    page.fill("input[name=login]", ada.username)
    page.fill("input[name=password]", ada.password)
    page.click("button[type=submit]")
    page.wait_for_url("**/login/2fa**")
    screenshot(page, "02-two-factor")
    page.fill("input[name=code]", "000000" if ada.code() != "000000" else "111111")
    page.click("button[type=submit]")
    expect(page.locator(".alert")).to_contain_text("code is not right")
    page.fill("input[name=code]", ada.code())
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/experiments")
    expect(page.locator("#experiments tbody tr")).to_have_count(2)
    screenshot(page, "03-experiments")

    # a filter with an error shows where it is; a good one finds the experiment
    page.fill("#filter", "model_type = ")
    page.click("form.search button[type=submit]")
    expect(page.locator("#filter-error")).to_contain_text("column")
    expect(page.locator("#filter-error mark")).to_be_visible()
    screenshot(page, "04-filter-error")
    page.fill("#filter", "model_type = 'cnn1d' and params.lr > 0.0005")
    page.click("form.search button[type=submit]")
    rows = page.locator("#experiments tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("pump cnn")
    # the table is live too: an epoch logged now shows in its row without a reload
    expect(page.locator("body[data-live-connected='true']")).to_be_attached()
    as_user(
        api,
        ada,
        "POST",
        f"/experiments/{cnn}/runs",
        json={"epoch": 50, "train_loss": 0.02, "val_loss": 0.03},
    )
    # through the epoch-event window, the relay, the broker and the console's reader: under a
    # loaded CI that can take longer than expect's default 5 s
    expect(rows.first.locator("[data-field=epochs]")).to_have_text("51", timeout=30_000)

    # its page draws the curves from the downsampled history
    rows.first.locator("a").first.click()
    page.wait_for_url(f"{base}/experiments/{cnn}")
    # (locators, not wait_for_function: the page's CSP forbids evaluating strings)
    expect(page.locator("#charts[data-drawn]:not([data-drawn='0'])")).to_be_attached()
    assert chart_state(page)["lastEpoch"] == "50"
    expect(page.locator("canvas").first).to_be_visible()
    expect(page.locator("body[data-live-connected='true']")).to_be_attached()
    screenshot(page, "05-experiment")

    # a training script logs epochs through the API: the open chart gains them, no reload
    def train() -> None:
        with httpx.Client(base_url=base, timeout=30.0, trust_env=False) as script:
            for epoch in range(50, 70):
                as_user(
                    script,
                    ada,
                    "POST",
                    f"/experiments/{cnn}/runs",
                    json={"epoch": epoch, "train_loss": 0.02, "val_loss": 0.03},
                )
                time.sleep(0.05)

    trainer = threading.Thread(target=train)
    trainer.start()
    expect(page.locator("#charts[data-last-epoch='69']")).to_be_attached(timeout=30_000)
    trainer.join()
    expect(page.locator("#total-epochs")).to_have_text("70")
    screenshot(page, "06-experiment-live")

    # lifecycle from the page: the status follows
    page.click("button[data-action=complete]")
    expect(page.locator("#status")).to_have_text("completed")

    # compare the two
    page.goto(f"{base}/experiments")
    page.check(f"input[name=id][value='{cnn}']")
    page.check(f"input[name=id][value='{lstm}']")
    page.click("#compare-selected")
    page.wait_for_url("**/compare?**")
    expect(page.locator("#compare-charts[data-drawn]:not([data-drawn='0'])")).to_be_attached()
    lr = page.locator("#params tr", has_text="lr")
    expect(lr).to_have_class("differs")
    expect(page.locator("#params tr", has_text="batch")).not_to_have_class("differs")
    screenshot(page, "07-compare")

    # sign out: the session is gone, pages send the browser to sign in again
    page.click("#sign-out")
    page.wait_for_url("**/login**")
    page.goto(f"{base}/experiments/{cnn}")
    expect(page).to_have_url(f"{base}/login?next=/experiments/{cnn}")
    screenshot(page, "08-signed-out")


def test_the_dark_theme_sticks_and_the_empty_state_shows_how_to_log_a_first_run(
    stack: Stack, page: Page, user: Account
) -> None:
    sign_in(page, stack.gateway_url, user)

    expect(page.locator(".empty")).to_contain_text("runyard.init")
    before = page.evaluate("getComputedStyle(document.body).backgroundColor")
    page.click("#theme-toggle")
    after = page.evaluate("getComputedStyle(document.body).backgroundColor")
    page.reload()
    kept = page.evaluate("document.documentElement.dataset.theme")

    assert before != after
    assert kept in ("dark", "light")
    page.set_viewport_size({"width": 390, "height": 844})
    screenshot(page, "09-empty-phone")
