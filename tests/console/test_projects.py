"""Projects and artifacts in headless Chromium: open a project and see its experiments and best
runs (and a clashing name refused at its field); browse an experiment's artifacts by folder,
preview an image and a text file, follow a file's and a folder's "Register as model version"
link to the models page's register form filled in, download one through the console and delete
one after its confirmation page. Screenshots under ``.data/screenshots/``."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from runyard.devstack import Stack

from .conftest import sign_in
from .helpers import ROOT, Account, as_user, assert_accessible, log_epochs, new_experiment

pytestmark = pytest.mark.console

SHOTS = ROOT / ".data" / "screenshots"


def shot(page: Page, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def png(width: int = 24, height: int = 16) -> bytes:
    """A real PNG (a red-to-blue gradient) without an imaging library."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(
        b"\x00"
        + b"".join(bytes((255 * x // width, 40, 255 - 255 * x // width)) for x in range(width))
        for _ in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def put_artifact(
    api: httpx.Client, who: Account, experiment_id: str, path: str, body: bytes, kind: str
) -> Any:
    response = api.put(
        f"/api/v1/experiments/{experiment_id}/artifacts/{path}",
        content=body,
        headers={"Authorization": f"Bearer {who.token}", "Content-Type": kind},
    )
    assert response.status_code in (200, 201), response.text
    return response.json()


def test_a_project_shows_its_experiments_and_best_runs(
    stack: Stack, page: Page, api: httpx.Client, user: Account
) -> None:
    base = stack.gateway_url
    project = as_user(
        api, user, "POST", "/projects", json={"name": "pump faults", "description": "bearing study"}
    )
    as_user(api, user, "POST", "/projects", json={"name": "other work"})
    runs = {}
    for name, accuracy in (("cnn a", 0.81), ("cnn b", 0.93)):
        runs[name] = new_experiment(
            api, user, name, project=project["id"], best_metric="val_accuracy", best_mode="max"
        )
        log_epochs(api, user, runs[name], range(0, 5), val_accuracy=accuracy)
    new_experiment(api, user, "outside the project")

    sign_in(page, base, user, next_path="/projects")
    expect(page.locator("#projects tbody tr")).to_have_count(2)
    assert_accessible(page)
    page.get_by_role("link", name="pump faults").click()
    page.wait_for_url(f"{base}/projects/{project['id']}")
    rows = page.locator("#project-experiments tbody tr")
    expect(rows).to_have_count(2)
    expect(page.locator("#project-experiments")).not_to_contain_text("outside the project")
    best = page.locator("table.best[data-metric=val_accuracy] tr")
    expect(best).to_have_count(2)
    expect(best.first).to_contain_text("cnn b")  # the higher accuracy first
    assert_accessible(page)
    shot(page, "projects-01-project")

    # a name the user already has: the API's 409 is shown at the name field
    page.goto(f"{base}/projects")
    page.fill("#project-name", "other work")
    page.click("#new-project button[type=submit]")
    expect(page.locator("#project-name-error")).to_contain_text("other work")
    expect(page.locator("#project-name")).to_have_attribute("aria-invalid", "true")
    assert_accessible(page)
    shot(page, "projects-02-name-taken")


def test_artifacts_are_browsed_previewed_downloaded_and_deleted(
    stack: Stack, page: Page, api: httpx.Client, user: Account
) -> None:
    base = stack.gateway_url
    experiment = new_experiment(api, user, "with files")
    image = png()
    log = b"epoch 1 loss 0.5\nepoch 2 loss 0.25\n"
    put_artifact(api, user, experiment, "plots/loss.png", image, "image/png")
    put_artifact(api, user, experiment, "logs/train.log", log, "text/plain")
    put_artifact(
        api, user, experiment, "model.bin", bytes(range(256)) * 8, "application/octet-stream"
    )

    sign_in(page, base, user, next_path=f"/experiments/{experiment}")
    page.get_by_role("link", name="Artifacts").click()
    page.wait_for_url(f"{base}/experiments/{experiment}/artifacts")
    tree = page.locator("#artifact-tree")
    expect(tree.locator("tr.folder")).to_have_count(2)
    expect(tree.locator("tr[data-path='model.bin'] td[data-size]")).to_have_attribute(
        "data-size", "2048"
    )
    expect(page.locator("#artifact-totals")).to_contain_text("3 files")
    assert_accessible(page)
    shot(page, "artifacts-01-tree")

    # a file and a folder each link to the models page's register form, filled in
    tree.locator("tr[data-path='model.bin'] a.register-link").click()
    page.wait_for_url(f"{base}/models?**")
    expect(page.locator("#r-artifact")).to_have_value("model.bin")
    expect(page.locator("#r-experiment")).to_have_value(experiment)
    page.go_back()
    tree.locator("tr[data-folder='plots/'] a.register-link").click()
    expect(page.locator("#r-artifact")).to_have_value("plots/")
    expect(page.locator("#r-experiment")).to_have_value(experiment)
    page.go_back()

    # a folder, then a text file's preview
    tree.get_by_role("link", name="logs/", exact=True).click()
    expect(page.locator("#artifact-tree tr[data-path]")).to_have_count(1)
    page.get_by_role("link", name="train.log", exact=True).click()
    expect(page.locator("#preview-text")).to_contain_text("epoch 2 loss 0.25")
    assert_accessible(page)

    # the image is shown, read through the console
    page.goto(f"{base}/experiments/{experiment}/artifacts/view?path=plots/loss.png")
    img = page.locator("#preview-image")
    expect(img).to_be_visible()
    page.wait_for_function("() => document.getElementById('preview-image').naturalWidth === 24")
    assert_accessible(page)
    shot(page, "artifacts-02-image")
    with page.expect_download() as info:
        page.click("#download")
    downloaded = Path(info.value.path())
    assert downloaded.read_bytes() == image
    assert info.value.suggested_filename == "loss.png"

    # deleting asks first; cancel keeps it, confirming deletes it
    page.click("#delete")
    expect(page.locator("#confirm-h")).to_be_visible()
    assert_accessible(page)
    page.click("#cancel-delete")
    expect(page.locator("#artifact-tree tr[data-path='plots/loss.png']")).to_have_count(1)
    page.get_by_role("link", name="Delete plots/loss.png").click()
    page.click("#confirm-delete")
    expect(page.locator("#deleted-note")).to_contain_text("plots/loss.png")
    expect(page.locator("#artifact-tree tr[data-path='plots/loss.png']")).to_have_count(0)
    shot(page, "artifacts-03-deleted")
    gone = api.get(
        f"/api/v1/experiments/{experiment}/artifacts/plots/loss.png",
        headers={"Authorization": f"Bearer {user.token}"},
    )
    assert gone.status_code == 404


def test_an_experiments_explanations_show_their_feature_attributions_as_bars(
    stack: Stack, page: Page, api: httpx.Client, user: Account
) -> None:
    base = stack.gateway_url
    experiment = new_experiment(api, user, "explained")
    data = {"features": ["rms", "kurtosis", "peak"], "attributions": [0.4, -0.25, 0.1]}
    url = f"/experiments/{experiment}/explanations"
    as_user(api, user, "POST", url, json={"method": "shap", "explanation_data": data})
    as_user(api, user, "POST", url, json={"method": "other", "explanation_data": {"steps": "x"}})

    sign_in(page, base, user, next_path=f"/experiments/{experiment}")
    page.click("#explanations-link")
    page.wait_for_url(f"{base}{url}")
    shap = page.locator("section.explanation", has_text="shap")
    expect(shap.locator("svg.bar-chart rect")).to_have_count(3)
    expect(shap.locator("svg.bar-chart rect.neg")).to_have_count(1)
    expect(shap.locator("table.attributions tr").first).to_contain_text("rms")
    # data that holds no attributions is shown as it is
    expect(page.locator("section.explanation", has_text="other").locator("pre")).to_contain_text(
        '"steps"'
    )
    assert_accessible(page)
    shot(page, "explanations-01-bars")
