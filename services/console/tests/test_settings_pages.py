"""The notifications, webhooks, account and security pages on their own (no API behind the
console here): where a signed-out browser is sent, forms refused without their CSRF token, the
QR code drawn on the server, the key usage chart's buckets, which preference rows a form
changes; and the sessions list as it reads the API's sessions (an HTTP server in the API's
place). Their whole-stack paths run in a browser in tests/console."""

from __future__ import annotations

import html
import json
import re
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from runyard.console.config import Settings
from runyard.console.main import create_app
from runyard.console.pages.notifications import wanted_change
from runyard.console.pages.security import qr_data_uri, usage_series
from runyard.console.pages.webhooks import attempts_by_delivery, chosen_events
from runyard.console.session import SESSION_COOKIE
from runyard.console.web import CSP
from runyard.shared.testing import running_app
from services.console.tests.conftest import stand_in_api

from .test_pages import sealed_session

SIGNED_IN_PAGES = [
    "/notifications",
    "/notifications/preferences",
    "/notifications/emails",
    "/webhooks",
    "/webhooks/00000000-0000-0000-0000-000000000009",
    "/account",
    "/account/security",
    "/account/api-keys",
    "/account/api-keys/00000000-0000-0000-0000-000000000009",
]


@pytest.mark.parametrize("path", SIGNED_IN_PAGES)
async def test_a_signed_out_browser_is_sent_to_sign_in_and_back(client: Any, path: str) -> None:
    response = await client.get(path)

    assert response.status_code == 303
    assert response.headers["location"] == f"/login?next={path}"
    assert response.headers["content-security-policy"] == CSP


@pytest.mark.parametrize(
    "path",
    [
        "/notifications/read-all",
        "/notifications/preferences",
        "/webhooks",
        "/webhooks/00000000-0000-0000-0000-000000000009/rotate-secret",
        "/account/password",
        "/account/2fa/setup",
        "/account/api-keys",
        "/account/sessions/revoke-all",
    ],
)
async def test_a_signed_in_form_without_its_csrf_token_is_refused_before_the_api_is_asked(
    client: Any, settings: Settings, path: str
) -> None:
    """Nothing listens at the API URL: a form that got past the check would be a 502."""
    client.cookies.set(SESSION_COOKIE, sealed_session(settings))
    response = await client.post(path, data={"csrf_token": "forged", "name": "x"})

    assert response.status_code == 403
    assert "Form expired" in response.text


async def test_the_accessibility_checker_is_served_with_its_licence(client: Any) -> None:
    axe = await client.get("/static/vendor/axe-core-4.14.1/axe.min.js")
    licence = await client.get("/static/vendor/axe-core-4.14.1/LICENSE")

    assert axe.status_code == 200 and "axe-core" in axe.text[:2000]
    assert "Mozilla Public License" in licence.text


def test_the_qr_code_is_an_svg_image_of_the_otpauth_uri_the_csp_allows() -> None:
    uri = "otpauth://totp/Runyard:ada?secret=JBSWY3DPEHPK3PXP&issuer=Runyard"
    image = qr_data_uri(uri)

    assert image.startswith("data:image/svg+xml")  # img-src 'self' data:
    svg = urllib.parse.unquote(image.split(",", 1)[1])
    assert svg.startswith("<svg") and "<path" in svg
    assert "style=" not in svg and "<script" not in svg
    # drawn from the URI: the same URI, the same picture; another account, another one
    assert image == qr_data_uri(uri) and image != qr_data_uri(uri.replace("ada", "bob"))


def test_key_usage_is_counted_per_minute_up_to_now_with_quiet_minutes_as_zeros() -> None:
    now = datetime(2026, 12, 6, 12, 0, 30, tzinfo=UTC).timestamp()
    items = [
        {"timestamp": "2026-12-06T11:58:05Z", "status_code": 200},
        {"timestamp": "2026-12-06T11:58:50Z", "status_code": 429},
        {"timestamp": "2026-12-06T12:00:01Z", "status_code": 200},
        {"timestamp": "not a time", "status_code": 200},
    ]
    series = usage_series(items, now=now)

    assert len(series["x"]) == 60  # an hour of minutes at least
    assert series["x"][-1] == datetime(2026, 12, 6, 12, 0, tzinfo=UTC).timestamp()
    assert series["requests"][-3:] == [2.0, 0.0, 1.0]
    assert series["errors"][-3:] == [1.0, 0.0, 0.0]
    assert sum(series["requests"]) == 3.0
    assert usage_series([], now=now) == {"x": [], "requests": [], "errors": []}


def test_older_key_usage_is_counted_per_hour() -> None:
    now = datetime(2026, 12, 6, 12, 0, tzinfo=UTC).timestamp()
    items = [{"timestamp": "2026-12-05T09:10:00Z", "status_code": 200}]
    series = usage_series(items, now=now)

    assert series["x"][1] - series["x"][0] == 3600
    assert sum(series["requests"]) == 1.0


def test_a_preferences_form_changes_only_the_rows_it_changes_and_never_a_security_alert() -> None:
    current = {
        "event_type": "experiment.completed",
        "email_enabled": True,
        "email_frequency": "immediate",
        "in_app_enabled": True,
        "critical": False,
    }
    same = {"email.experiment.completed": "immediate", "in_app.experiment.completed": "on"}
    assert wanted_change(current, same) == {}
    assert wanted_change(current, {"email.experiment.completed": "weekly"}) == {
        "email_enabled": True,
        "email_frequency": "weekly",
        "in_app_enabled": False,
    }
    off = {"email.experiment.completed": "off", "in_app.experiment.completed": "on"}
    assert wanted_change(current, off) == {"email_enabled": False}
    alert = {**current, "event_type": "login.failed", "critical": True}
    assert wanted_change(alert, {"email.login.failed": "off"}) == {}


def test_webhook_events_and_attempts_are_grouped_for_the_page() -> None:
    assert chosen_events(["experiment.*"], "email.sent, experiment.*\nnotification.*") == [
        "experiment.*",
        "email.sent",
        "notification.*",
    ]
    attempts: list[dict[str, Any]] = [
        {"id": "3", "delivery_id": "d1", "attempt_number": 2},
        {"id": "2", "delivery_id": None, "attempt_number": 1},
        {"id": "1", "delivery_id": "d1", "attempt_number": 1},
    ]
    grouped, tests = attempts_by_delivery(attempts)
    assert [a["id"] for a in grouped["d1"]] == ["1", "3"]
    assert [a["id"] for a in tests] == ["2"]


LOGIN_SESSION = "00000000-0000-0000-0000-0000000000c1"
BASIC_SESSION = "00000000-0000-0000-0000-0000000000c2"


def api_session(session_id: str, **fields: Any) -> dict[str, Any]:
    """One item of ``GET /auth/sessions``."""
    return {
        "id": session_id,
        "ip_address": "198.51.100.4",
        "user_agent": None,
        "device_type": "other",
        "browser": None,
        "os": None,
        "location": None,
        "created_at": "2026-12-06T09:00:00Z",
        "last_active": "2026-12-06T11:55:00Z",
        "expires_at": "2027-01-05T09:00:00Z",
        "is_active": True,
        "logged_out_at": None,
        "revoked_reason": None,
        "kind": "login",
        "current": False,
        **fields,
    }


@pytest.fixture
def auth_api() -> Iterator[tuple[str, list[str]]]:
    """A small HTTP server in the API's place answering the security page's reads and a
    session's ``DELETE`` (recording each request as ``METHOD path``): the account's own browser
    session and the ``basic_auth`` session of an MLflow client sending username and password."""
    asked: list[str] = []
    sessions = [
        api_session(
            LOGIN_SESSION,
            user_agent="Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
            device_type="desktop",
            browser="Firefox 133.0",
            os="Linux",
            current=True,
        ),
        api_session(
            BASIC_SESSION,
            ip_address="203.0.113.7",
            user_agent="python-requests/2.32.3",
            browser="Python Requests 2.32",
            created_at="2026-12-05T08:00:00Z",
            last_active="2026-12-06T11:58:00Z",
            kind="basic_auth",
        ),
    ]
    answers = {
        "/api/v1/auth/me": {"id": "00000000-0000-0000-0000-000000000001", "totp_enabled": False},
        "/api/v1/auth/sessions": {"items": sessions, "next_cursor": None},
        "/api/v1/auth/login-history": {"items": [], "next_cursor": None},
        "/api/v1/notifications/inbox/unread-count": {"unread_count": 0},
    }

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def answer(self, status: int, body: Any = None) -> None:
            data = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            asked.append(f"GET {self.path}")
            found = answers.get(urllib.parse.urlsplit(self.path).path)
            if found is None:
                self.answer(404, {"title": "Not found", "status": 404})
            else:
                self.answer(200, found)

        def do_DELETE(self) -> None:
            asked.append(f"DELETE {self.path}")
            if self.path in {f"/api/v1/auth/sessions/{s['id']}" for s in sessions}:
                self.answer(204)
            else:
                self.answer(404, {"title": "Not found", "status": 404})

    with stand_in_api(Handler) as url:
        yield url, asked


def session_row(page: str, session_id: str) -> tuple[str, str]:
    """A sessions table row: its text as read on the page, and its markup."""
    found = re.search(rf'<tr data-session="{session_id}".*?</tr>', page, re.S)
    assert found, f"no row for session {session_id}"
    text = html.unescape(" ".join(re.sub(r"<[^>]+>", " ", found[0]).split()))
    return text, found[0]


async def test_a_basic_auth_session_is_listed_as_the_mlflow_client_and_signs_out_like_any(
    kafka_bootstrap: str, auth_api: tuple[str, list[str]]
) -> None:
    url, asked = auth_api
    settings = Settings(
        environment="test", api_url=url, kafka_bootstrap_servers=kafka_bootstrap, live_enabled=False
    )
    async with running_app(create_app(settings)) as client:
        client.cookies.set(SESSION_COOKIE, sealed_session(settings, csrf="t" * 43))
        page = await client.get("/account/security")
        revoked = await client.post(
            f"/account/sessions/{BASIC_SESSION}/revoke", data={"csrf_token": "t" * 43}
        )

    assert page.status_code == 200, page.text
    basic, basic_markup = session_row(page.text, BASIC_SESSION)
    assert basic.startswith("MLflow client (username and password) python-requests/2.32.3 ")
    assert "unknown system" not in basic and "Python Requests" not in basic
    assert "203.0.113.7" in basic
    assert "2026-12-05 08:00 2026-12-06 11:58 Sign out" in basic  # signed in, last active
    assert (
        'aria-label="Sign out the session of MLflow client (username and password) from '
        '203.0.113.7, signed in 2026-12-05 08:00"'
    ) in basic_markup
    assert f'action="/account/sessions/{BASIC_SESSION}/revoke"' in basic_markup
    browser, _ = session_row(page.text, LOGIN_SESSION)
    assert browser.startswith("Firefox 133.0 on Linux desktop this session 198.51.100.4 ")
    assert "MLflow" not in browser and "Sign out" not in browser

    assert revoked.status_code == 303
    assert revoked.headers["location"] == "/account/security?done=revoked"
    assert f"DELETE /api/v1/auth/sessions/{BASIC_SESSION}" in asked
    assert not [a for a in asked if a.startswith("DELETE") and LOGIN_SESSION in a]
