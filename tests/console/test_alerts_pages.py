"""Alerts in the console against the whole stack: the rule form (the API's 422 at the field it
names, for a condition's number and a scope's filter), enable/disable, edit, backtest and delete
over HTTP; and in headless Chromium a threshold rule created in the form that fires when
epochs are logged through the API, its alert appearing live (``alert.triggered`` over the
event stream, no reload) on the open experiment page and in the open alerts list, and then
deleted through its confirmation page by keyboard; the header on one line at 1280 px; the
accessibility check on the form, the list (both themes), the experiment page and the
confirmation page."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from runyard.devstack import Stack

from .conftest import sign_in
from .helpers import Account, as_user, assert_accessible, new_experiment, screenshot
from .test_http import page_csrf, signed_in_browser

pytestmark = pytest.mark.console

NO_TIMERS = "window.setInterval = () => 0; window.__loaded = (window.__loaded || 0) + 1;"


def log(api: httpx.Client, account: Account, experiment_id: str, accuracies: list[float]) -> None:
    """Epochs 1..n with these ``val_accuracy`` values, in one batch."""
    runs = [
        {"epoch": i, "val_accuracy": value, "train_loss": 1 / i}
        for i, value in enumerate(accuracies, start=1)
    ]
    as_user(api, account, "POST", f"/experiments/{experiment_id}/runs", json={"runs": runs})


def rules_of(api: httpx.Client, account: Account) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = as_user(api, account, "GET", "/alert-rules")["items"]
    return items


def test_the_rule_form_shows_the_apis_refusal_at_its_field_and_a_rule_can_be_run_back(
    stack: Stack, api: httpx.Client, user: Account
) -> None:
    experiment = new_experiment(api, user, "backtested run")
    log(api, user, experiment, [0.5, 0.6, 0.75, 0.8])
    with signed_in_browser(stack, user) as browser:
        csrf = page_csrf(browser, "/alerts/rules/new")
        form = {"csrf_token": csrf, "name": "diverging", "kind": "divergence", "enabled": "on"}
        form |= {"metric": "val_loss", "epochs": "5", "percent": "-5", "scope_type": "all"}
        refused = browser.post("/alerts/rules", data=form)
        assert refused.status_code == 422
        assert re.search(r'id="f-percent"[^>]*aria-invalid="true"', refused.text)
        assert 'id="f-percent-error">' in refused.text and "greater than 0" in refused.text
        assert 'value="diverging"' in refused.text  # what was typed stays

        bad_filter = {**form, "percent": "30", "scope_type": "filter", "filter": "metrics. >"}
        refused = browser.post("/alerts/rules", data=bad_filter)
        assert refused.status_code == 422
        assert 'id="f-filter-error">Invalid filter' in refused.text
        assert rules_of(api, user) == []  # nothing half-written

        threshold = {"csrf_token": csrf, "name": "accurate", "kind": "threshold", "enabled": "on"}
        threshold |= {"metric": "val_accuracy", "op": ">=", "value": "0.7"}
        threshold |= {"scope_type": "experiment", "experiment_id": experiment}
        created = browser.post("/alerts/rules", data=threshold)
        assert created.status_code == 303, created.text
        (rule,) = rules_of(api, user)
        assert rule["condition"] == {
            "kind": "threshold",
            "metric": "val_accuracy",
            "op": ">=",
            "value": 0.7,
        }
        assert rule["scope"]["experiment_id"] == experiment and rule["enabled"] is True
        listed = browser.get("/alerts/rules?done=created")
        assert "val_accuracy &gt;= 0.7" in listed.text and "accurate" in listed.text

        off = browser.post(
            f"/alerts/rules/{rule['id']}/enabled", data={"csrf_token": csrf, "enabled": "false"}
        )
        assert off.status_code == 303
        assert rules_of(api, user)[0]["enabled"] is False

        # the stored history: the rule would have fired at epoch 3 (0.75 >= 0.7)
        backtest = browser.post(f"/alerts/rules/{rule['id']}/backtest", data={"csrf_token": csrf})
        assert backtest.status_code == 200, backtest.text
        rows = re.findall(r'<tr data-experiment="([^"]+)" data-status="(\w+)">', backtest.text)
        assert rows == [(experiment, "triggered")]
        assert re.search(r'<td class="num">3</td>', backtest.text)
        assert "backtested run" in backtest.text
        assert as_user(api, user, "GET", "/alerts")["items"] == []  # stored nothing

        edit = browser.get(f"/alerts/rules/{rule['id']}")
        assert 'value="accurate"' in edit.text and 'value="0.7"' in edit.text
        saved = browser.post(
            f"/alerts/rules/{rule['id']}",
            data={**threshold, "name": "accurate!", "severity": "critical"},
        )
        assert saved.status_code == 303, saved.text
        after = rules_of(api, user)[0]
        assert (after["name"], after["severity"], after["version"]) == ("accurate!", "critical", 3)

        gone = browser.post(f"/alerts/rules/{rule['id']}/delete", data={"csrf_token": csrf})
        assert gone.status_code == 303
        assert rules_of(api, user) == []


def test_a_rule_made_in_the_form_fires_and_its_alert_appears_live(
    stack: Stack, page: Page, api: httpx.Client, user: Account
) -> None:
    base = stack.gateway_url
    page.add_init_script(NO_TIMERS)
    experiment = new_experiment(api, user, "watched run")
    sign_in(page, base, user, next_path="/alerts/rules/new")
    page.wait_for_url(f"{base}/alerts/rules/new")

    # the form shows the chosen kind's fields only
    page.select_option("#f-kind", "plateau")
    expect(page.locator("#f-epochs")).to_be_visible()
    expect(page.locator("#f-value")).to_be_hidden()
    page.select_option("#f-kind", "threshold")
    expect(page.locator("#f-value")).to_be_visible()
    expect(page.locator("#f-epochs")).to_be_hidden()
    page.fill("#f-name", "good enough")
    page.fill("#f-metric", "val_accuracy")
    page.select_option("#f-op", ">=")
    page.fill("#f-value", "abc")
    page.select_option("#f-scope_type", "experiment")
    page.fill("#f-experiment_id", experiment)
    page.click("#save-rule")
    # the API's refusal, at the field, and the page still usable by keyboard and screen reader
    expect(page.locator("#f-value-error")).to_be_visible()
    expect(page.locator("#f-value")).to_have_attribute("aria-invalid", "true")
    screenshot(page, "alert-rule-form-refused")
    assert_accessible(page)
    page.fill("#f-value", "0.9")
    page.click("#save-rule")
    page.wait_for_url(f"{base}/alerts/rules?done=created")
    expect(page.locator("#rules tbody tr")).to_have_count(1)
    expect(page.locator("#rules")).to_contain_text("val_accuracy >= 0.9")
    # at 1280 px the header holds every entry on one line, Sign out included; narrower, the
    # links wrap below and none is hidden; the severity reads in both themes
    assert page.viewport_size == {"width": 1280, "height": 800}
    assert_header_on_one_line(page)
    expect(page.locator("#rules .severity.sev-warning")).to_have_text("warning")
    screenshot(page, "alert-rules-header-1280")
    assert_accessible(page)
    page.emulate_media(color_scheme="dark")
    screenshot(page, "alert-rules-dark")
    assert_accessible(page)
    page.emulate_media(color_scheme="light")
    page.set_viewport_size({"width": 480, "height": 800})
    for link in page.locator("header.topbar nav a").all():
        expect(link).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 480
    screenshot(page, "alert-rules-header-480")
    page.set_viewport_size({"width": 1280, "height": 800})

    # the alerts list in a second tab, the experiment page in the first, both live
    listing = page.context.new_page()
    listing.add_init_script(NO_TIMERS)
    listing.goto(f"{base}/alerts")
    page.goto(f"{base}/experiments/{experiment}")
    for tab in (page, listing):
        tab.wait_for_function("() => document.body.dataset.liveConnected === 'true'")
    expect(page.locator("#experiment-alerts tbody tr.alert-row")).to_have_count(0)
    assert_accessible(page)

    log(api, user, experiment, [0.7, 0.85, 0.93, 0.95])
    row = page.locator("#experiment-alerts tbody tr.alert-row")
    expect(row).to_have_count(1, timeout=30_000)
    expect(row).to_have_attribute("data-status", "triggered")
    expect(row).to_contain_text("good enough")
    expect(row.locator("td.num")).to_have_text("3")
    expect(page.locator("#alerts-count")).to_have_text("1")
    page.locator("#experiment-alerts").scroll_into_view_if_needed()
    screenshot(page, "experiment-alerts-live")
    listed = listing.locator("#alerts tbody tr[data-alert]")
    expect(listed).to_have_count(1, timeout=30_000)
    expect(listed).to_contain_text("watched run")
    expect(listed.locator("a", has_text="watched run")).to_have_attribute(
        "href", f"/experiments/{experiment}"
    )
    # what arrived live is what the API has, and neither page was loaded again
    (alert,) = as_user(api, user, "GET", "/alerts", params={"experiment_id": experiment})["items"]
    assert listed.get_attribute("data-alert") == alert["id"] and alert["epoch"] == 3
    assert page.evaluate("window.__loaded") == 1 and listing.evaluate("window.__loaded") == 1
    assert int(listing.get_attribute("#alerts", "data-events") or 0) == 1
    screenshot(listing, "alerts-list-live")
    assert_accessible(page)
    assert_accessible(listing)

    # a reload renders the same row from the API
    page.reload()
    expect(page.locator("#experiment-alerts tbody tr.alert-row")).to_have_count(1)
    expect(page.locator("#experiment-alerts")).to_contain_text("good enough")
    listing.close()

    # deleting asks first, by keyboard and without script: Cancel keeps the rule, confirming
    # deletes it
    (rule,) = rules_of(api, user)
    page.goto(f"{base}/alerts/rules")
    page.get_by_role("link", name="Delete rule good enough").focus()
    page.keyboard.press("Enter")
    page.wait_for_url(f"{base}/alerts/rules/{rule['id']}/delete")
    expect(page.locator("#confirm-h")).to_have_text("Delete this alert rule?")
    expect(page.locator("#confirm-rule-delete")).to_contain_text("val_accuracy >= 0.9")
    screenshot(page, "alert-rule-delete-confirm")
    assert_accessible(page)
    page.locator("#cancel-delete").focus()
    page.keyboard.press("Enter")
    page.wait_for_url(f"{base}/alerts/rules")
    assert [r["id"] for r in rules_of(api, user)] == [rule["id"]]
    page.get_by_role("link", name="Delete rule good enough").focus()
    page.keyboard.press("Enter")
    page.wait_for_url(f"{base}/alerts/rules/{rule['id']}/delete")
    page.locator("#confirm-delete").focus()
    page.keyboard.press("Enter")
    page.wait_for_url(f"{base}/alerts/rules?done=deleted")
    expect(page.locator("#notice")).to_contain_text("deleted")
    expect(page.locator("#rules tbody tr[data-rule]")).to_have_count(0)
    assert rules_of(api, user) == []


def assert_header_on_one_line(page: Page) -> None:
    """The first and last main-menu links and Sign out share one line; nothing overflows."""
    links = page.locator("header.topbar nav a")
    first, last = links.first.bounding_box(), links.last.bounding_box()
    out = page.locator("#sign-out").bounding_box()
    assert first is not None and last is not None and out is not None
    assert first["y"] == last["y"], (first, last)
    assert out["y"] < first["y"] + first["height"] and first["y"] < out["y"] + out["height"]
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
