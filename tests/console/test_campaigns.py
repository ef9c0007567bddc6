"""Campaigns in headless Chromium: create an HPO campaign with the search-space form (an
impossible range is refused at its row with the API's message), then watch its page gain
trials, objective points and the best so far while a script acts as the training loop through
the API; an architecture search's trials with their architectures."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import Page, expect

from runyard.devstack import Stack

from .conftest import sign_in
from .helpers import Account, as_user, assert_accessible
from .test_projects import shot

pytestmark = pytest.mark.console


def finish_trial(api: httpx.Client, who: Account, campaign_id: str, accuracy: float) -> str:
    """One trial as a training loop runs it: ask for it, log an epoch, complete it."""
    suggestion = as_user(api, who, "POST", f"/hpo-campaigns/{campaign_id}/suggest")
    experiment_id = str(suggestion["experiment"]["id"])
    as_user(
        api,
        who,
        "POST",
        f"/experiments/{experiment_id}/runs",
        json={"epoch": 1, "val_accuracy": accuracy, "train_loss": 1 - accuracy},
    )
    as_user(
        api,
        who,
        "POST",
        f"/experiments/{experiment_id}/complete",
        json={"final_metrics": {"val_accuracy": accuracy}, "total_epochs": 1},
    )
    return experiment_id


def test_an_hpo_campaign_is_created_with_the_form_and_follows_its_trials_live(
    stack: Stack, page: Page, api: httpx.Client, user: Account
) -> None:
    base = stack.gateway_url
    sign_in(page, base, user, next_path="/campaigns")
    page.click("#new-hpo")
    page.wait_for_url(f"{base}/campaigns/hpo/new")
    page.fill("#f-name", "lr search")
    page.fill("#f-max_trials", "3")
    page.fill("#f-seed", "7")
    page.fill("#p0_name", "lr")
    page.select_option("#p0_type", "float")
    page.fill("#p0_low", "0.1")
    page.fill("#p0_high", "0.001")  # low above high: the API refuses the range
    page.check("#p0_log")
    page.fill("#p1_name", "optimizer")
    page.select_option("#p1_type", "categorical")
    page.fill("#p1_choices", "adam, sgd")
    # a script adds rows past the blank ones the page comes with, labelled like them
    blank = page.locator("#search-space tbody tr[data-row]").count()
    page.click("#add-param")
    expect(page.locator("#search-space tbody tr[data-row]")).to_have_count(blank + 1)
    expect(page.get_by_label(f"Name of parameter {blank + 1}")).to_be_focused()
    assert_accessible(page)
    page.click("#create-campaign")
    error = page.locator("#p0-error")
    expect(error).to_contain_text("low must not be greater than high")
    expect(page.locator("#p0_name")).to_have_value("lr")  # what was typed stays
    assert_accessible(page)
    shot(page, "campaigns-01-form-error")

    page.fill("#p0_low", "0.0001")
    page.fill("#p0_high", "0.1")
    page.click("#create-campaign")
    page.wait_for_url(f"{base}/campaigns/hpo/*")
    campaign_id = page.url.rsplit("/", 1)[1]
    expect(page.locator("#trials tbody tr.none")).to_have_count(1)
    page.wait_for_function("() => document.body.dataset.liveConnected === 'true'")

    # the training loop reports: the page follows without a reload
    finish_trial(api, user, campaign_id, 0.71)
    finish_trial(api, user, campaign_id, 0.84)
    rows = page.locator("#trials tbody tr[data-trial]")
    expect(rows).to_have_count(2)
    expect(page.locator("#objective-chart")).to_have_attribute("data-points", "2", timeout=30_000)
    expect(page.locator("#best")).to_have_text("0.84")
    expect(page.locator("#scatter-chart")).to_have_attribute("data-points", "2")
    page.select_option("#scatter-param", "optimizer")
    expect(page.locator("#scatter-chart")).to_have_attribute("data-points", "2")
    assert_accessible(page)
    shot(page, "campaigns-02-hpo-live")

    page.goto(f"{base}/campaigns")
    expect(page.locator(f"#hpo-campaigns tr[data-campaign='{campaign_id}']")).to_contain_text(
        "lr search"
    )


def test_an_architecture_search_shows_its_trials_and_architectures(
    stack: Stack, page: Page, api: httpx.Client, user: Account
) -> None:
    base = stack.gateway_url
    campaign = as_user(
        api,
        user,
        "POST",
        "/nas-campaigns",
        json={"name": "tiny nets", "search_algorithm": "random", "num_trials": 5},
    )
    for i, (layers, accuracy) in enumerate([(2, 0.7), (4, 0.82), (3, 0.78)]):
        as_user(
            api,
            user,
            "POST",
            f"/nas-campaigns/{campaign['id']}/trials",
            json={
                "architecture": {"layers": layers, "kernel": 3 + i},
                "validation_accuracy": accuracy,
                "num_parameters": 1000 * layers,
            },
        )
    sign_in(page, base, user, next_path=f"/campaigns/nas/{campaign['id']}")
    expect(page.locator("#trials tbody tr[data-trial]")).to_have_count(3)
    page.locator("#trials tbody tr[data-trial] summary").first.click()
    expect(page.locator("#trials pre.arch").first).to_contain_text('"layers": 2')
    expect(page.locator("#objective-chart")).to_have_attribute("data-points", "3")
    expect(page.locator("#scatter-chart")).to_have_attribute("data-points", "3")
    assert_accessible(page)
    shot(page, "campaigns-03-nas")

    # a trial recorded while the page is open appears (the page reads again while it runs)
    as_user(
        api,
        user,
        "POST",
        f"/nas-campaigns/{campaign['id']}/trials",
        json={"architecture": {"layers": 5}, "validation_accuracy": 0.9},
    )
    expect(page.locator("#trials tbody tr[data-trial]")).to_have_count(4, timeout=30_000)

    page.goto(f"{base}/campaigns")
    expect(page.locator(f"#nas-campaigns tr[data-campaign='{campaign['id']}']")).to_contain_text(
        "4 / 5"
    )
    assert_accessible(page)
    page.click("#new-nas")
    page.fill("#f-name", "tiny nets")  # taken: the API's 409 is shown at the name
    page.fill("#f-search_space_config", '{"layers": [2, 3, 4]}')
    page.click("#nas-form button[type=submit]")
    expect(page.locator("#f-name-error")).to_contain_text("tiny nets")
    assert_accessible(page)
    shot(page, "campaigns-04-nas-form-error")
