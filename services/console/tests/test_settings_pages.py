"""The notifications, webhooks, account and security pages on their own (no API behind the
console here): where a signed-out browser is sent, forms refused without their CSRF token, the
QR code drawn on the server, the key usage chart's buckets, which preference rows a form
changes. Their whole-stack paths run in a browser in tests/console."""

from __future__ import annotations

import urllib.parse
from datetime import UTC, datetime
from typing import Any

import pytest

from runyard.console.config import Settings
from runyard.console.pages.notifications import wanted_change
from runyard.console.pages.security import qr_data_uri, usage_series
from runyard.console.pages.webhooks import attempts_by_delivery, chosen_events
from runyard.console.session import SESSION_COOKIE
from runyard.console.web import CSP

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
