"""The model registry in headless Chromium: search the models list, open a model, register a
version from an experiment's artifact with the form, move an alias with the form and see one
moved elsewhere (the API) arrive live, see the 409 of deleting a version that holds an alias
as the form's error, a version's file downloaded, and its prediction stats with their charts and drift badge;
axe-core finds no serious violation on any of these pages."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from runyard.devstack import Stack

from .conftest import sign_in
from .helpers import Account, as_user, assert_accessible, new_experiment, screenshot

pytestmark = pytest.mark.console


def put_artifact(api: httpx.Client, who: Account, experiment_id: str, path: str) -> None:
    response = api.put(
        f"/api/v1/experiments/{experiment_id}/artifacts/{path}",
        content=b"weights " * 512,
        headers={
            "Authorization": f"Bearer {who.token}",
            "Content-Type": "application/octet-stream",
        },
    )
    assert response.status_code in (200, 201), response.text


def test_models_list_model_alias_move_and_version_stats(
    stack: Stack, page: Page, api: httpx.Client, user: Account
) -> None:
    base = stack.gateway_url
    name = f"pump-cnn-{uuid.uuid4().hex[:6]}"
    experiment_id = new_experiment(api, user, "pump cnn for models")
    put_artifact(api, user, experiment_id, "model/weights.bin")
    as_user(api, user, "POST", "/models", json={"name": f"other-{uuid.uuid4().hex[:6]}"})

    sign_in(page, base, user, next_path="/models")
    # register v1 with the list page's form (the model is created with it), filled in by a link
    page.goto(f"{base}/models?experiment_id={experiment_id}&artifact_path=model/weights.bin")
    expect(page.locator("#r-experiment")).to_have_value(experiment_id)
    expect(page.locator("#r-artifact")).to_have_value("model/weights.bin")
    page.fill("#r-name", name)
    page.click("#register-form button[type=submit]")
    page.wait_for_url("**/versions/1")
    expect(page.locator("#version-status")).to_have_text("ready")
    model_id = page.get_attribute("#model-version", "data-model")
    assert model_id
    # the version's file, downloaded through the console
    link = page.locator("#version-files a")
    expect(link).to_have_text("weights.bin")
    with page.expect_download() as download:
        link.click()
    assert Path(download.value.path()).read_bytes() == b"weights " * 512
    # v2 and an alias through the API, predictions of v1
    as_user(
        api,
        user,
        "POST",
        f"/models/{model_id}/versions",
        json={"experiment_id": experiment_id, "artifact_path": "model/"},
    )
    as_user(api, user, "PUT", f"/models/{model_id}/aliases/champion", json={"version": 1})
    now = datetime.now(UTC)
    predictions = [
        {
            "input": {"rms": i / 10},
            "output": "normal",
            "confidence": (i % 10) / 10 + 0.05,
            "latency_ms": 2.0 + i % 7,
            "time": (now - timedelta(minutes=i)).isoformat(),
            **({"error": "timeout"} if i % 20 == 0 else {}),
        }
        for i in range(60)
    ]
    logged = as_user(
        api,
        user,
        "POST",
        f"/models/{name}/versions/1/predictions",
        json={"predictions": predictions},
    )
    assert logged["count"] == 60

    # the list, searched by name
    page.goto(f"{base}/models")
    expect(page.locator("nav a[aria-current=page]")).to_have_text("Models")
    page.fill("#model-search", name[-6:])
    page.press("#model-search", "Enter")
    rows = page.locator("#models tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("champion → v1")
    assert_accessible(page)
    rows.first.locator("a").click()

    # the model: versions with lineage, the alias
    page.wait_for_url(f"**/models/{model_id}")
    expect(page.locator("#version-table tbody tr")).to_have_count(2)
    lineage = page.locator("#version-table tr[data-version='1'] a[href^='/experiments/']")
    expect(lineage).to_have_attribute("href", f"/experiments/{experiment_id}")
    expect(page.locator("[data-alias-version=champion]")).to_have_text("v1")
    assert_accessible(page)

    # move the alias with the form (keyboard: type, choose, Enter)
    page.fill("#alias-name", "champion")
    page.select_option("#alias-version", "2")
    page.press("#alias-name", "Enter")
    page.wait_for_url(f"**/models/{model_id}#aliases")
    expect(page.locator("[data-alias-version=champion]")).to_have_text("v2")

    # moved elsewhere while the page is open: it shows without a reload
    page.wait_for_function("() => document.body.dataset.liveConnected === 'true'")
    as_user(api, user, "PUT", f"/models/{model_id}/aliases/challenger", json={"version": 1})
    expect(page.locator("[data-alias-version=challenger]")).to_have_text("v1", timeout=30_000)
    expect(page.locator("#live-note")).to_have_text("challenger is now v1")

    # deleting a version that holds an alias: the API's 409 is the form's error
    page.click("#version-table tr[data-version='1'] button.danger")
    expect(page.locator("#version-error")).to_contain_text("v1")
    expect(page.locator("#version-table tbody tr")).to_have_count(2)
    assert_accessible(page)
    screenshot(page, "model")

    # the version's stats: numbers, charts, drift badge
    page.goto(f"{base}/models/{model_id}/versions/1")
    expect(page.locator("#stat-count")).to_have_text("60")
    expect(page.locator("#stat-error-rate")).to_contain_text("5.00 %")
    expect(page.locator("#stat-drift .status")).to_be_visible()
    for chart in ("chart-latency", "chart-count", "chart-confidence"):
        expect(page.locator(f"#{chart} canvas")).to_have_count(1)
    assert sum(int(c) for c in page.locator("#confidence-table td.num").all_inner_texts()) == 60
    expect(page.locator("#lineage")).to_have_attribute("href", f"/experiments/{experiment_id}")
    assert_accessible(page)
    screenshot(page, "model-version")
