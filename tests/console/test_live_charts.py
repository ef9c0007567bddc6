"""The console in headless Chromium: zooming a chart reads the finer range from the API; the
unread badge and stalled runs follow the event stream, without a reload. Screenshots under
``.data/console-screenshots/``."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qs, urlparse

import asyncpg
import httpx
import pytest
from playwright.sync_api import Page, expect

from runyard.devstack import Stack

from .conftest import chart_state, sign_in
from .helpers import Account, as_user, log_epochs, new_experiment, screenshot

pytestmark = pytest.mark.console

SPIKE_EPOCH = 10_500


def drag_across(page: Page, chart: int, start: float, end: float) -> None:
    """Drag-select on the chart's plot from ``start`` to ``end`` (fractions of its width)."""
    plot = page.locator("#charts .chart").nth(chart).locator(".u-over")
    box = plot.bounding_box()
    assert box is not None
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * start, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * (start + end) / 2, y, steps=4)
    page.mouse.move(box["x"] + box["width"] * end, y, steps=4)
    page.mouse.up()


def test_drag_selecting_a_range_reads_it_finer_from_the_api_and_redraws_it(
    stack: Stack, page: Page, api: httpx.Client, user: Account
) -> None:
    base = stack.gateway_url
    run = new_experiment(api, user, "long run")
    log_epochs(api, user, run, range(0, 20_000))
    as_user(  # one spike, which every level of detail must keep
        api, user, "POST", f"/experiments/{run}/runs", json={"epoch": SPIKE_EPOCH, "val_loss": 50.0}
    )
    sign_in(page, base, user)

    page.goto(f"{base}/experiments/{run}")
    expect(page.locator("#charts[data-drawn]:not([data-drawn='0'])")).to_be_attached()
    whole = chart_state(page)
    assert (whole["fromEpoch"], whole["toEpoch"], whole["zoomed"]) == ("0", "19999", "false")
    assert int(whole["points"]) <= 1000  # 20 epochs and more a bucket

    with page.expect_response(lambda r: "from_epoch=" in r.url and "/history" in r.url) as read:
        drag_across(page, 0, 0.45, 0.60)
    asked = {
        k: int(v[0])
        for k, v in parse_qs(urlparse(read.value.url).query).items()
        if k in ("from_epoch", "to_epoch", "buckets")
    }
    body = read.value.json()
    expect(page.locator("#charts[data-zoomed='true']")).to_be_attached()
    zoomed = chart_state(page)

    # the API was asked for the selected range only, and the chart shows what it answered
    assert 7_000 < asked["from_epoch"] < SPIKE_EPOCH < asked["to_epoch"] < 14_000
    assert (int(zoomed["fromEpoch"]), int(zoomed["toEpoch"])) == (
        asked["from_epoch"],
        asked["to_epoch"],
    )
    # more detail: a few epochs a bucket instead of 20, and the spike still there
    span = asked["to_epoch"] - asked["from_epoch"] + 1
    points = int(zoomed["points"])
    assert points == len(body["epoch"]) and points >= min(span, asked["buckets"]) * 0.9
    assert span / points < 4 < 20_000 / int(whole["points"])
    assert max(v for v in body["series"]["val_loss"]["max"] if v is not None) == 50.0
    screenshot(page, "10-experiment-zoomed")

    page.click("#reset-zoom")
    expect(page.locator("#charts[data-zoomed='false']")).to_be_attached()
    assert chart_state(page)["toEpoch"] == "19999"


def test_the_unread_badge_follows_the_inbox_without_a_reload(
    stack: Stack, page: Page, api: httpx.Client, user: Account
) -> None:
    base = stack.gateway_url
    # a new account's inbox has its email-verification notice: wait for it, then start from 0
    deadline = time.monotonic() + 30
    while not as_user(api, user, "GET", "/notifications/inbox")["items"]:
        assert time.monotonic() < deadline, "no notice of the new account in its inbox"
        time.sleep(0.2)
    as_user(api, user, "POST", "/notifications/inbox/read-all")
    sign_in(page, base, user)
    page.goto(f"{base}/experiments")
    expect(page.locator("body[data-live-connected='true']")).to_be_attached()
    badge = page.locator("#unread")
    expect(badge).to_have_text("0")

    # a finished run becomes an inbox entry: notification.created carries the new count
    for name in ("first", "second"):
        run = new_experiment(api, user, name)
        as_user(api, user, "POST", f"/experiments/{run}/complete")
    expect(badge).to_have_text("2", timeout=30_000)
    screenshot(page, "11-unread-badge")

    # reading them elsewhere (the API, another tab): notification.read, no lifecycle event
    inbox = as_user(api, user, "GET", "/notifications/inbox")
    as_user(api, user, "POST", f"/notifications/inbox/{inbox['items'][0]['id']}/read")
    expect(badge).to_have_text("1", timeout=30_000)
    as_user(api, user, "POST", "/notifications/inbox/read-all")
    expect(badge).to_have_text("0", timeout=30_000)
    expect(badge).to_have_class("count zero")


async def epochs_event_out(admin_dsn: str, experiment_id: str) -> None:
    """Until the run's ``experiment.epochs_logged`` has left the experiments service (its pending
    row turned into an event, the outbox published): one arriving after the stalled event would
    clear the badge, an epoch being a sign of life."""
    conn = await asyncpg.connect(admin_dsn)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            waiting = await conn.fetchval(
                """SELECT EXISTS (SELECT FROM experiments.pending_epochs
                                  WHERE experiment_id = $1)
                       OR EXISTS (SELECT FROM experiments.outbox WHERE published_at IS NULL)""",
                experiment_id,
            )
            if not waiting:
                return
            await asyncio.sleep(0.1)
        raise AssertionError("the epochs' event was not published within 30 s")
    finally:
        await conn.close()


async def make_silent(admin_dsn: str, experiment_id: str) -> None:
    """As if the run's process had said nothing for five minutes (its limit is one)."""
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(
            """UPDATE experiments.experiments
               SET last_seen_at = now() - interval '5 minutes',
                   started_at = now() - interval '5 minutes'
               WHERE id = $1""",
            experiment_id,
        )
    finally:
        await conn.close()


def test_a_silent_run_shows_stalled_in_the_table_and_on_its_page_until_it_reports(
    stack: Stack, page: Page, api: httpx.Client, user: Account
) -> None:
    base = stack.gateway_url
    run = new_experiment(api, user, "hung run", stale_after_s=60)
    log_epochs(api, user, run, range(0, 5))
    with ThreadPoolExecutor(1) as thread:  # (Playwright's sync API holds this thread's loop)
        thread.submit(asyncio.run, epochs_event_out(stack.admin_dsn, run)).result()
    sign_in(page, base, user)
    page.goto(f"{base}/experiments")
    expect(page.locator("body[data-live-connected='true']")).to_be_attached()
    row = page.locator(f"tr[data-experiment='{run}']")
    stalled = row.locator("[data-field=stalled]")
    expect(stalled).to_be_hidden()

    # the experiments service's worker finds it silent: experiment.stalled reaches the table
    with ThreadPoolExecutor(1) as thread:  # (Playwright's sync API holds this thread's loop)
        thread.submit(asyncio.run, make_silent(stack.admin_dsn, run)).result()
    expect(stalled).to_be_visible(timeout=30_000)
    expect(row.locator("[data-field=status]")).to_have_text("running")
    screenshot(page, "12-table-stalled")

    page.goto(f"{base}/experiments/{run}")
    expect(page.locator("#stalled")).to_be_visible()
    expect(page.locator("#stalled-note")).to_contain_text("may have died or hung")
    expect(page.locator("body[data-live-connected='true']")).to_be_attached()
    expect(page.locator("#charts[data-drawn]:not([data-drawn='0'])")).to_be_attached()
    screenshot(page, "13-experiment-stalled")

    # the process reports again: an epoch, experiment.resumed; the page clears without reload
    started = time.monotonic()
    as_user(api, user, "POST", f"/experiments/{run}/runs", json={"epoch": 5, "val_loss": 0.4})
    expect(page.locator("#stalled")).to_be_hidden(timeout=30_000)
    expect(page.locator("#stalled-note")).to_be_hidden()
    expect(page.locator("#status")).to_have_text("running")
    assert time.monotonic() - started < 30
    page.goto(f"{base}/experiments")
    expect(page.locator(f"tr[data-experiment='{run}'] [data-field=stalled]")).to_be_hidden()
