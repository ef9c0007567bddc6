"""Datasets in headless Chromium: generate one with the form and watch the job's progress bar
reach the end without a reload, open the dataset, its signals and one signal's waveform (the
API's downsampled samples); import a CSV with the upload form (its progress shown) and see a
bad file's job fail with its problems, and a bad field refused at the field."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from runyard.devstack import Stack

from .conftest import sign_in
from .helpers import Account, assert_accessible
from .test_projects import shot

pytestmark = pytest.mark.console


def csv_file(path: Path, rows: list[tuple[str, str, list[float]]]) -> Path:
    header = "signal_id,fault_class," + ",".join(f"s{i}" for i in range(len(rows[0][2])))
    lines = [header] + [f"{sid},{fault}," + ",".join(map(str, v)) for sid, fault, v in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_generation_runs_to_its_dataset_and_a_signal_shows_its_waveform(
    stack: Stack, page: Page, api: httpx.Client, user: Account
) -> None:
    base = stack.gateway_url
    sign_in(page, base, user, next_path="/datasets")
    page.click("#new-generation")
    page.wait_for_url(f"{base}/datasets/generate")
    page.fill("#f-name", "pump sim")
    page.fill("#f-signals_per_combination", "30")
    page.fill("#f-duration_s", "0.5")
    page.fill("#f-seed", "3")
    assert_accessible(page)
    page.click("#start-generation")
    page.wait_for_url(f"{base}/datasets/jobs/generations/*")
    first = page.eval_on_selector("#job", "el => el.dataset.status")
    shot(page, "datasets-01-job")
    # the bar follows the job to its end without a reload
    expect(page.locator("#status")).to_have_text("completed", timeout=120_000)
    expect(page.locator("#progress")).to_have_js_property("value", 100)
    expect(page.locator("#progress-value")).to_have_text("100%")
    expect(page.locator("#dataset-link")).to_be_visible()
    assert first in ("pending", "running", "completed")
    assert_accessible(page)
    shot(page, "datasets-02-job-done")

    page.goto(f"{base}/datasets")
    expect(page.locator("#jobs tbody tr")).to_have_count(1)
    assert_accessible(page)
    page.locator("#jobs tbody tr a").first.click()
    page.click("#open-dataset")
    page.wait_for_url(f"{base}/datasets/*")
    expect(page.locator("#num-signals")).to_have_text("390")
    expect(page.locator("#signals tbody tr")).to_have_count(50)
    page.select_option("select[name=fault_class]", "imbalance")
    page.click("form.search button[type=submit]")
    expect(page.locator("#signals tbody tr").first).to_contain_text("imbalance")
    assert_accessible(page)
    page.locator("#signals tbody tr a").first.click()
    chart = page.locator("#waveform")
    expect(chart).to_have_attribute("data-points", "2000")
    expect(page.locator("#num-samples")).to_contain_text("5,120")
    # zooming reads the samples of the range itself
    box = chart.bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.35, box["y"] + box["height"] / 2, steps=4)
    page.mouse.up()
    page.wait_for_function(
        "() => Number(document.getElementById('waveform').dataset.points) < 2000"
    )
    assert_accessible(page)
    shot(page, "datasets-03-waveform")


def test_an_import_uploads_with_progress_and_a_bad_file_fails_with_its_problems(
    stack: Stack, page: Page, api: httpx.Client, user: Account, tmp_path: Path
) -> None:
    base = stack.gateway_url
    good = csv_file(
        tmp_path / "good.csv",
        [("a", "normal", [0.1 * i for i in range(32)]), ("b", "imbalance", [0.2] * 32)],
    )
    bad = csv_file(tmp_path / "bad.csv", [("a", "normal", [0.1] * 32), ("a", "normal", [0.2] * 32)])
    sign_in(page, base, user, next_path="/datasets/import")

    # a field the API refuses is marked at the field (the page stays)
    page.set_input_files("#f-file", str(good))
    page.fill("#f-name", "recordings")
    page.fill("#f-sample_rate_hz", "0")
    page.click("#start-import")
    expect(page.locator("#f-sample_rate_hz-error")).to_be_visible()
    expect(page.locator("#f-sample_rate_hz")).to_have_attribute("aria-invalid", "true")
    # the file went up with its progress shown (the bar's last step: all of it)
    expect(page.locator("#import-form")).to_have_attribute("data-uploaded", "100")
    assert_accessible(page)
    shot(page, "datasets-04-import-field-error")

    page.fill("#f-sample_rate_hz", "64")
    page.click("#start-import")
    page.wait_for_url(f"{base}/datasets/jobs/imports/*")
    expect(page.locator("#status")).to_have_text("completed", timeout=60_000)
    expect(page.locator("#num-signals")).to_have_text("2")

    page.goto(f"{base}/datasets/import")
    page.set_input_files("#f-file", str(bad))
    page.fill("#f-name", "bad recordings")
    page.click("#start-import")
    page.wait_for_url(f"{base}/datasets/jobs/imports/*")
    expect(page.locator("#status")).to_have_text("failed", timeout=60_000)
    expect(page.locator("#job-error")).to_be_visible()
    expect(page.locator("#error-list")).to_contain_text("appears twice")
    assert_accessible(page)
    shot(page, "datasets-05-import-failed")
