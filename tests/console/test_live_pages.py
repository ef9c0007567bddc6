"""The pages that used to poll, live from Kafka in headless Chromium against the whole stack:
an endpoint's deliveries (``webhook.deliveries_updated``), a dataset job's progress bar
(``dataset_generation.progressed`` / ``.completed``) and a NAS campaign's trials
(``nas_trial.completed``).

Polling is made impossible: an init script replaces ``setInterval`` (the pages' only timer for
their fallback reads) with a no-op before any page script runs, and the tests check the stream
stayed connected. What a page shows after its ``hello`` can then only come from its events; each
page counts the events it applied in ``data-events``, which the tests check too."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import Page, expect

from runyard.devstack import Stack

from .conftest import sign_in
from .helpers import Account, as_user, assert_accessible, new_experiment, webhook_receiver

pytestmark = pytest.mark.console

NO_TIMERS = "window.setInterval = () => 0; window.__loaded = (window.__loaded || 0) + 1;"


def stream_is_connected(page: Page) -> None:
    page.wait_for_function("() => document.body.dataset.liveConnected === 'true'")


def test_a_delivery_appears_live_on_the_endpoints_page_with_its_status(
    stack: Stack, page: Page, api: httpx.Client, user: Account
) -> None:
    base = stack.gateway_url
    page.add_init_script(NO_TIMERS)
    with webhook_receiver() as receiver:
        created = as_user(
            api,
            user,
            "POST",
            "/webhooks",
            json={
                "name": "live receiver",
                "url": receiver.url,
                "provider_type": "generic",
                "enabled_events": ["experiment.created"],
            },
        )
        receiver.secret = created["secret"]
        sign_in(page, base, user, next_path=f"/webhooks/{created['id']}")
        page.wait_for_url(f"{base}/webhooks/{created['id']}")
        expect(page.locator(".delivery")).to_have_count(0)
        stream_is_connected(page)

        new_experiment(api, user, "announced run")
        delivery = page.locator(".delivery[data-status='succeeded']")
        expect(delivery).to_have_count(1, timeout=30_000)
        expect(delivery).to_contain_text("experiment.created")
        expect(delivery.locator(".attempt-code")).to_have_text("200")
        assert int(page.get_attribute("#deliveries", "data-events") or 0) >= 1
        assert [r.signature_valid for r in receiver.received] == [True]

        # a failed attempt shows up too, with its answer and its retry pending
        receiver.secret = "whsec_" + "A" * 32  # the receiver no longer recognises the signature
        new_experiment(api, user, "refused run")
        refused = page.locator(".delivery[data-status='pending']")
        expect(refused).to_have_count(1, timeout=30_000)
        expect(refused.locator(".attempt-code")).to_have_text("401")
        assert page.evaluate("window.__loaded") == 1  # never reloaded
        stream_is_connected(page)
        assert_accessible(page)


def test_a_generation_moves_its_bar_live_to_the_end(
    stack: Stack, page: Page, api: httpx.Client, user: Account
) -> None:
    base = stack.gateway_url
    page.add_init_script(NO_TIMERS)
    # a job ahead in the queue (one job at a time per worker) keeps ours pending while its
    # page opens, so that everything ours does comes after the page's stream said hello
    ahead = as_user(
        api,
        user,
        "POST",
        "/dataset-generations",
        json={"name": "queue ahead", "signals_per_combination": 40, "duration_s": 1.0, "seed": 1},
    )
    ours = as_user(
        api,
        user,
        "POST",
        "/dataset-generations",
        json={"name": "watched", "signals_per_combination": 30, "duration_s": 0.5, "seed": 2},
    )
    sign_in(page, base, user, next_path=f"/datasets/jobs/generations/{ours['id']}")
    page.wait_for_url(f"{base}/datasets/jobs/generations/{ours['id']}")
    stream_is_connected(page)
    expect(page.locator("#status")).to_have_text("completed", timeout=180_000)
    expect(page.locator("#progress")).to_have_js_property("value", 100)
    expect(page.locator("#progress-value")).to_have_text("100%")
    expect(page.locator("#dataset-link")).to_be_visible()
    expect(page.locator("#num-signals")).to_have_text("390")
    events = (page.get_attribute("#job", "data-events") or "").split()
    # the bar moved with the job's progress events, and the end came over the stream too
    assert "progressed" in events and events[-1] == "completed", events
    assert page.get_attribute("#job", "data-stage") == "storing"
    assert page.evaluate("window.__loaded") == 1
    stream_is_connected(page)
    assert_accessible(page)
    done = as_user(api, user, "GET", f"/dataset-generations/{ahead['id']}")
    assert done["status"] in ("running", "completed")


def test_a_nas_campaign_page_follows_its_trials_live(
    stack: Stack, page: Page, api: httpx.Client, user: Account
) -> None:
    base = stack.gateway_url
    page.add_init_script(NO_TIMERS)
    campaign = as_user(
        api,
        user,
        "POST",
        "/nas-campaigns",
        json={"name": "live nets", "search_algorithm": "random", "num_trials": 3},
    )

    def record(layers: int, accuracy: float) -> None:
        as_user(
            api,
            user,
            "POST",
            f"/nas-campaigns/{campaign['id']}/trials",
            json={
                "architecture": {"layers": layers},
                "validation_accuracy": accuracy,
                "num_parameters": 1000 * layers,
            },
        )

    record(2, 0.7)
    sign_in(page, base, user, next_path=f"/campaigns/nas/{campaign['id']}")
    page.wait_for_url(f"{base}/campaigns/nas/{campaign['id']}")
    expect(page.locator("#trials tbody tr[data-trial]")).to_have_count(1)
    stream_is_connected(page)

    record(4, 0.86)
    expect(page.locator("#trials tbody tr[data-trial]")).to_have_count(2, timeout=30_000)
    expect(page.locator("#objective-chart")).to_have_attribute("data-points", "2")
    expect(page.locator("#best")).to_have_text("0.86")
    expect(page.locator("#trial-count")).to_have_text("2 of 3")
    page.locator("#trials tbody tr[data-trial='1'] summary").click()
    expect(page.locator("#trials tr[data-trial='1'] pre.arch")).to_contain_text('"layers": 4')

    record(3, 0.8)  # the last: the campaign completes
    expect(page.locator("#status")).to_have_text("completed", timeout=30_000)
    expect(page.locator("#trials tbody tr[data-trial]")).to_have_count(3)
    expect(page.locator("#scatter-chart")).to_have_attribute("data-points", "3")
    assert int(page.get_attribute("#campaign", "data-events") or 0) >= 2
    assert page.evaluate("window.__loaded") == 1
    stream_is_connected(page)
    assert_accessible(page)
