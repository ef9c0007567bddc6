"""The admin pages in headless Chromium against the whole stack, as an admin made the way
operators make one (``python -m runyard.auth create-admin``): users found by search, one
deactivated (it can no longer sign in) and reactivated, one locked by failed sign-ins and
unlocked, a role changed; the gateway's request metrics charted per endpoint; the audit log
filtered by actor, action and time, showing that role change (and, opened, its body). A non-admin has no Admin entry and
gets a 403. axe-core checks each page; screenshots under ``.data/console-screenshots/``."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from playwright.sync_api import Page, expect

from runyard.devstack import Stack

from .conftest import sign_in
from .helpers import PASSWORD, Account, assert_accessible, register, screenshot

pytestmark = pytest.mark.console


@pytest.fixture
def admin(stack: Stack, api: httpx.Client) -> Account:
    name = f"root{uuid.uuid4().hex[:8]}"
    made = subprocess.run(
        [
            sys.executable,
            "-m",
            "runyard.auth",
            "create-admin",
            f"--username={name}",
            f"--email={name}@example.test",
            "--password-stdin",
            f"--database-url={stack.service_database_urls['auth']}",
        ],
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    login = api.post("/api/v1/auth/login", json={"login": name, "password": PASSWORD})
    assert login.status_code == 200, login.text
    return Account(name, PASSWORD, login.json()["access_token"])


def login_status(api: httpx.Client, account: Account, password: str | None = None) -> int:
    answer = api.post(
        "/api/v1/auth/login",
        json={"login": account.username, "password": password or account.password},
    )
    return answer.status_code


def charted(page: Page) -> int:
    """The requests the metrics charts drew (0 before the first summary)."""
    drawn = page.get_attribute("#metrics-charts", "data-drawn") or ""
    return int(drawn) if drawn.isdigit() else 0


def find_user(page: Page, base: str, username: str) -> None:
    page.goto(f"{base}/admin/users")
    page.fill("#user-search input[name=q]", username)
    page.click("#user-search button[type=submit]")
    expect(page.locator("#users tbody tr")).to_have_count(1)
    expect(page.locator("#users tbody tr").first).to_have_attribute("data-username", username)


def test_an_admin_manages_users_reads_metrics_and_filters_the_audit_log(
    stack: Stack, page: Page, api: httpx.Client, admin: Account
) -> None:
    base = stack.gateway_url
    started = datetime.now(UTC) - timedelta(minutes=1)
    bob = register(api, "bob")
    eve = register(api, "eve")
    sign_in(page, base, admin)

    # the nav leads an admin to the users
    page.click("#nav-admin")
    expect(page).to_have_url(f"{base}/admin/users")
    expect(page.locator("#users tbody tr").first).to_be_visible()
    assert_accessible(page)
    screenshot(page, "80-admin-users")

    # deactivated: bob cannot sign in; reactivated: he can again
    find_user(page, base, bob.username)
    row = page.locator(f"#users tr[data-username='{bob.username}']")
    row.locator("button.deactivate").click()
    expect(page.locator("#admin-notice")).to_contain_text("deactivated")
    expect(row.locator(".user-state")).to_have_text("deactivated")
    expect(page.locator("#user-search input[name=q]")).to_have_value(bob.username)
    assert login_status(api, bob) in (401, 403)
    row.locator("button.reactivate").click()
    expect(page.locator("#admin-notice")).to_have_text("Account reactivated.")
    expect(row.locator(".user-state")).to_have_text("active")
    assert login_status(api, bob) == 200

    # five wrong passwords lock eve's account (even the right one is refused); unlocked here
    for _ in range(5):
        assert login_status(api, eve, "not her password at all") == 401
    assert login_status(api, eve) == 423
    find_user(page, base, eve.username)
    row = page.locator(f"#users tr[data-username='{eve.username}']")
    expect(row.locator(".user-state")).to_contain_text("locked until")
    assert_accessible(page)
    screenshot(page, "81-admin-user-locked")
    row.locator("button.unlock").click()
    expect(page.locator("#admin-notice")).to_have_text("Account unlocked.")
    expect(row.locator(".user-state")).to_have_text("active")
    expect(row.locator("button.unlock")).to_have_count(0)
    assert login_status(api, eve) == 200

    # a role change, refused for nobody: eve becomes a viewer
    row.locator("select[name=role]").select_option("viewer")
    row.locator(".role-form button").click()
    expect(page.locator("#admin-notice")).to_have_text("Role changed.")
    expect(row.locator("select[name=role]")).to_have_value("viewer")
    me = httpx.get(
        f"{base}/api/v1/auth/me",
        headers={"Authorization": f"Bearer {_token(api, eve)}"},
        timeout=30.0,
    )
    assert me.json()["role"] == "viewer"

    # request metrics: the summaries are rolled up every few seconds; all requests first
    page.goto(f"{base}/admin/metrics")
    deadline = time.monotonic() + 90
    while charted(page) == 0:
        assert time.monotonic() < deadline, "no request metrics were charted"
        time.sleep(1)
        page.reload()
    expect(page.locator("#requests-chart canvas")).to_have_count(1)
    expect(page.locator("#latency-chart canvas")).to_have_count(1)
    expect(page.locator("#endpoints tbody tr").first).to_contain_text("All requests")
    assert_accessible(page)
    screenshot(page, "82-admin-metrics")
    # one endpoint over the last 6 hours, chosen in the form
    login_route = "POST /api/v1/auth/login"
    deadline = time.monotonic() + 90
    while page.locator("#endpoint option", has_text=login_route).count() == 0:
        assert time.monotonic() < deadline, "the sign-in endpoint has no summaries"
        time.sleep(1)
        page.reload()
    page.select_option("#endpoint", login_route)
    page.select_option("#period", "6h")
    page.click("#metrics-form button[type=submit]")
    expect(page.locator("#charts-title")).to_contain_text(login_route)
    expect(page.locator("#endpoints tr.chosen")).to_contain_text(login_route)
    # every sign-in above (five of them refused) once the summaries have caught up
    deadline = time.monotonic() + 90
    while charted(page) < 7:
        assert time.monotonic() < deadline, "the sign-ins were not all counted"
        time.sleep(1)
        page.reload()
    expect(page.locator("#latency-chart canvas")).to_have_count(1)
    screenshot(page, "83-admin-metrics-endpoint")

    # the audit log: an unknown actor is an error at its field; the admin's PATCHes since the
    # test began show the role change (the audit rows are written in batches)
    page.goto(f"{base}/admin/audit")
    assert_accessible(page)
    page.fill("#actor", "nobody-" + uuid.uuid4().hex[:6])
    page.click("#audit-filters button[type=submit]")
    expect(page.locator("#actor-error")).to_contain_text("No user is called")
    expect(page.locator("#actor")).to_have_attribute("aria-invalid", "true")
    page.fill("#actor", admin.username)
    page.fill("#action", "PATCH /api/v1/auth/users")
    page.fill("#since", started.strftime("%Y-%m-%dT%H:%M"))
    page.click("#audit-filters button[type=submit]")
    eve_id = str(
        api.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {_token(api, eve)}"}).json()[
            "id"
        ]
    )
    deadline = time.monotonic() + 30
    while page.locator("#audit tbody tr", has_text=eve_id).count() == 0:
        assert time.monotonic() < deadline, "the role change is not in the audit log"
        time.sleep(0.5)
        page.reload()
    rows = page.locator("#audit tbody tr")
    # the deactivation, the reactivation and the role change: every row the admin's PATCH
    assert rows.count() == 3
    for text in rows.all_inner_texts():
        assert admin.username in text and "PATCH /api/v1/auth/users/{id}" in text
    expect(page.locator("#actor")).to_have_value(admin.username)
    assert_accessible(page)
    screenshot(page, "84-admin-audit")
    # the newest of them, opened: the request's body says what changed
    rows.first.locator("a.request-link").click()
    expect(page.locator("#request-title")).to_contain_text(f"PATCH /api/v1/auth/users/{eve_id}")
    expect(page.locator("#request-body")).to_contain_text('"role": "viewer"')
    expect(page.locator("#request-status")).to_have_text("200")
    assert_accessible(page)
    screenshot(page, "85-admin-audit-request")
    page.go_back()
    # a window that ended before the test began shows none of it
    page.fill("#until", started.strftime("%Y-%m-%dT%H:%M"))
    page.fill("#since", (started - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"))
    page.click("#audit-filters button[type=submit]")
    expect(page.locator("#audit tbody tr")).to_have_count(1)
    expect(page.locator("#audit tbody tr").first).to_contain_text("Nothing matches")


def _token(api: httpx.Client, account: Account) -> str:
    login = api.post(
        "/api/v1/auth/login", json={"login": account.username, "password": account.password}
    )
    assert login.status_code == 200, login.text
    return str(login.json()["access_token"])


def test_a_non_admin_has_no_admin_entry_and_gets_403(
    stack: Stack, page: Page, user: Account
) -> None:
    base = stack.gateway_url
    sign_in(page, base, user)
    expect(page.locator("nav[aria-label=Main] >> text=Experiments")).to_be_visible()
    expect(page.locator("#nav-admin")).to_have_count(0)
    for path in ("/admin", "/admin/users", "/admin/metrics", "/admin/audit"):
        response = page.goto(f"{base}{path}")
        assert response is not None and response.status == 403, path
        expect(page.locator("main")).to_contain_text("for admins")
    assert_accessible(page)
    screenshot(page, "86-admin-forbidden")
