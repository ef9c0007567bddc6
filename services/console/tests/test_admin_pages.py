"""The admin pages on their own (no API behind the console here): a signed-out browser is sent
to sign in, a non-admin gets the 403 page before the API is asked and no Admin entry in the
nav, an admin's forms are refused without their CSRF token, and the metric charts' series and
the endpoint table are computed from the API's summary rows as the page shows them. The
whole-stack paths run in a browser in tests/console/test_admin_pages.py."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import pytest

from runyard.console.config import Settings
from runyard.console.pages.admin import endpoint_totals, metric_series, parse_moment
from runyard.console.session import SESSION_COOKIE
from runyard.console.web import CSP

from .test_pages import sealed_session

USER_ID = "00000000-0000-0000-0000-000000000009"
ADMIN_PAGES = [
    "/admin",
    "/admin/users",
    "/admin/metrics",
    "/admin/audit",
    f"/admin/audit/request?request_id=r1&user_id={USER_ID}&at=2026-12-06T10:00:00Z",
]
ADMIN_FORMS = [
    f"/admin/users/{USER_ID}/role",
    f"/admin/users/{USER_ID}/active",
    f"/admin/users/{USER_ID}/unlock",
]


@pytest.mark.parametrize("path", ADMIN_PAGES)
async def test_a_signed_out_browser_is_sent_to_sign_in_and_back(client: Any, path: str) -> None:
    response = await client.get(path)

    assert response.status_code == 303
    assert response.headers["location"] == f"/login?next={quote(path, safe='/')}"
    assert response.headers["content-security-policy"] == CSP


@pytest.mark.parametrize("role", ["user", "viewer"])
@pytest.mark.parametrize("path", ADMIN_PAGES)
async def test_a_non_admin_gets_403_without_the_api_being_asked(
    client: Any, settings: Settings, role: str, path: str
) -> None:
    """Nothing listens at the API URL: a page that asked it would be a 502."""
    client.cookies.set(SESSION_COOKIE, sealed_session(settings, role=role))
    response = await client.get(path)

    assert response.status_code == 403
    assert "for admins" in response.text
    assert 'id="nav-admin"' not in response.text
    assert response.headers["content-security-policy"] == CSP


@pytest.mark.parametrize("path", ADMIN_FORMS)
async def test_a_non_admin_cannot_post_an_admin_form(
    client: Any, settings: Settings, path: str
) -> None:
    session = sealed_session(settings, role="user", csrf="t" * 43)
    client.cookies.set(SESSION_COOKIE, session)
    response = await client.post(path, data={"csrf_token": "t" * 43, "role": "admin"})

    assert response.status_code == 403
    assert "for admins" in response.text


@pytest.mark.parametrize("path", ADMIN_FORMS)
async def test_an_admin_form_without_its_csrf_token_is_refused_before_the_api_is_asked(
    client: Any, settings: Settings, path: str
) -> None:
    client.cookies.set(SESSION_COOKIE, sealed_session(settings, role="admin"))
    response = await client.post(path, data={"csrf_token": "forged", "role": "admin"})

    assert response.status_code == 403
    assert "Form expired" in response.text


async def test_an_admin_sees_the_admin_nav_entry(client: Any, settings: Settings) -> None:
    """The API is not there (a 502 page), but the page around the error is an admin's."""
    client.cookies.set(SESSION_COOKIE, sealed_session(settings, role="admin"))
    response = await client.get("/admin/users")

    assert response.status_code == 502
    assert 'id="nav-admin"' in response.text


def row(start: str, total: int, failed: int, p50: float, endpoint: str = "*") -> dict[str, Any]:
    return {
        "period_start": start,
        "method": "*" if endpoint == "*" else "GET",
        "endpoint": endpoint,
        "total_requests": total,
        "failed_requests": failed,
        "p50_response_time_ms": p50,
        "p95_response_time_ms": p50 * 2,
        "p99_response_time_ms": p50 * 3,
    }


def test_the_series_has_a_point_per_period_quiet_ones_without_latency() -> None:
    since = datetime(2026, 12, 6, 10, 0, 30, tzinfo=UTC).timestamp()
    until = datetime(2026, 12, 6, 10, 4, 10, tzinfo=UTC).timestamp()
    rows = [row("2026-12-06T10:01:00Z", 12, 2, 4.0), row("2026-12-06T10:03:00+00:00", 3, 0, 8.0)]

    series = metric_series(rows, since=since, until=until, step=60)

    start = datetime(2026, 12, 6, 10, 0, tzinfo=UTC).timestamp()
    assert series["x"] == [start + 60 * i for i in range(5)]
    assert series["requests"] == [0.0, 12.0, 0.0, 3.0, 0.0]
    assert series["errors"] == [0.0, 2.0, 0.0, 0.0, 0.0]
    assert series["p50"] == [None, 4.0, None, 8.0, None]
    assert series["p99"] == [None, 12.0, None, 24.0, None]


def test_endpoint_totals_add_requests_and_keep_the_worst_percentiles() -> None:
    rows = [
        row("2026-12-06T10:01:00Z", 10, 1, 5.0),
        row("2026-12-06T10:02:00Z", 4, 0, 9.0),
        row("2026-12-06T10:01:00Z", 7, 1, 5.0, "/api/v1/experiments"),
        row("2026-12-06T10:01:00Z", 3, 0, 1.0, "/api/v1/auth/me"),
        row("2026-12-06T10:02:00Z", 5, 0, 2.0, "/api/v1/auth/me"),
    ]

    totals = endpoint_totals(rows)

    assert [t["key"] for t in totals] == ["*", "GET /api/v1/auth/me", "GET /api/v1/experiments"]
    assert totals[0] == {"key": "*", "requests": 14, "errors": 1, "p95": 18.0, "p99": 27.0}
    assert totals[1]["requests"] == 8 and totals[1]["p95"] == 4.0


def test_a_time_filter_is_read_as_utc() -> None:
    assert parse_moment("") is None
    assert parse_moment("2026-12-06T09:30") == datetime(2026, 12, 6, 9, 30, tzinfo=UTC)
    assert parse_moment("2026-12-06T09:30:00Z") == datetime(2026, 12, 6, 9, 30, tzinfo=UTC)
    with pytest.raises(ValueError):
        parse_moment("yesterday")
