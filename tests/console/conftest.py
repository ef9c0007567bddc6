"""The console in a real headless Chromium (Debian's, driven by Playwright) against the whole
stack: one stack and one browser for the package."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from runyard.devstack import Stack

from .helpers import Account, enable_two_factor, register

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


#: the stalled-runs worker looks every half second (its default is 15 s), so that a run made
#: silent by a test shows as stalled at once; the silence limit itself stays the default
LIVENESS = {"EXPERIMENTS_STALL_POLL_INTERVAL_S": "0.5"}


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with Stack.isolated(tmp_path_factory.mktemp("console-stack"), extra_env=LIVENESS) as running:
        yield running


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.on(
        "console",
        lambda message: (
            errors.append(message.text)
            if message.type == "error" and "Content Security Policy" in message.text
            else None
        ),
    )
    try:
        yield tab
    finally:
        context.close()
    assert errors == [], f"scripts failed or CSP refused something: {errors}"


@pytest.fixture
def api(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.gateway_url, timeout=30.0, trust_env=False) as client:
        yield client


@pytest.fixture
def user(api: httpx.Client) -> Account:
    return register(api, "ada")


@pytest.fixture
def two_factor_user(api: httpx.Client) -> Account:
    account = register(api, "tfa")
    enable_two_factor(api, account)
    return account


def sign_in(page: Page, base_url: str, account: Account, *, next_path: str = "") -> None:
    page.goto(f"{base_url}/login" + (f"?next={next_path}" if next_path else ""))
    page.fill("input[name=login]", account.username)
    page.fill("input[name=password]", account.password)
    page.click("button[type=submit]")
    if account.totp_secret:
        page.wait_for_url("**/login/2fa**")
        page.fill("input[name=code]", account.code())
        page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/login" not in url)


def chart_state(page: Page) -> dict[str, Any]:
    return dict(page.eval_on_selector("#charts", "el => ({...el.dataset})"))
