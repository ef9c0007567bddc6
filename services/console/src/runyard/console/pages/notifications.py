"""Notifications: the in-app inbox (read one, read all; new entries and reads elsewhere arrive
over the event stream), how the user hears of each event type (email immediately or in an
hourly/daily/weekly digest, or not; in the inbox or not) and their time zone, which the digests
follow, and the log of emails sent to them."""

from __future__ import annotations

import asyncio
import uuid
import zoneinfo
from functools import cache
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse, Response

from runyard.console.gateway import ApiProblem
from runyard.console.pages.forms import checked, user_error, with_unread
from runyard.console.render import page
from runyard.console.web import CsrfDep, StateDep, UserApiDep

router = APIRouter(prefix="/notifications")

#: what the email column offers; "off" is ``email_enabled: false``
EMAIL_CHOICES = ("immediate", "hourly", "daily", "weekly", "off")
PAGE_SIZE = 50
Cursor = Annotated[str, Query(max_length=2000)]


@cache
def time_zones() -> list[str]:
    return sorted(zoneinfo.available_timezones())


@router.get("")
async def inbox(
    request: Request,
    state: StateDep,
    api: UserApiDep,
    unread_only: bool = False,
    cursor: Cursor = "",
) -> Response:
    found, unread = await with_unread(
        api,
        api.get(
            "/notifications/inbox", limit=PAGE_SIZE, cursor=cursor, unread_only=unread_only or None
        ),
    )
    next_url = None
    if found.get("next_cursor"):
        only = "unread_only=true&" if unread_only else ""
        next_url = f"/notifications?{only}cursor={quote(found['next_cursor'])}"
    context = {
        "items": found["items"],
        "unread": found.get("unread_count", unread),
        "unread_only": unread_only,
        "next_url": next_url,
        "paged": bool(cursor),
    }
    return page(request, state.templates, "notifications.html", context)


def back_to_inbox(request: Request) -> str:
    """Where a read button returns: the inbox as it was shown (its filter)."""
    unread_only = request.query_params.get("unread_only") == "true"
    return "/notifications?unread_only=true" if unread_only else "/notifications"


@router.post("/read-all", dependencies=[CsrfDep])
async def read_all(request: Request, api: UserApiDep) -> Response:
    await api.json("POST", "/notifications/inbox/read-all")
    return RedirectResponse(back_to_inbox(request), status_code=303)


@router.post("/{notification_id}/read", dependencies=[CsrfDep])
async def read_one(request: Request, api: UserApiDep, notification_id: uuid.UUID) -> Response:
    await api.json("POST", f"/notifications/inbox/{notification_id}/read")
    return RedirectResponse(back_to_inbox(request), status_code=303)


def email_choice(preference: dict[str, Any]) -> str:
    if not preference.get("email_enabled"):
        return "off"
    return str(preference.get("email_frequency") or "immediate")


async def preferences_page(
    request: Request,
    state: StateDep,
    api: UserApiDep,
    *,
    notice: str = "",
    error: str = "",
    status: int = 200,
) -> Response:
    (found, me), unread = await with_unread(
        api, asyncio.gather(api.get("/notifications/preferences"), api.get("/auth/me"))
    )
    rows = [{**p, "email_choice": email_choice(p)} for p in found["items"]]
    context = {
        "rows": rows,
        "choices": EMAIL_CHOICES,
        "me": me,
        "zones": time_zones(),
        "unread": unread,
        "notice": notice,
        "error": error,
    }
    return page(
        request, state.templates, "notification_preferences.html", context, status_code=status
    )


@router.get("/preferences")
async def preferences(
    request: Request, state: StateDep, api: UserApiDep, saved: str = ""
) -> Response:
    notices = {"1": "Preferences saved.", "tz": "Time zone saved."}
    return await preferences_page(request, state, api, notice=notices.get(saved, ""))


def wanted_change(current: dict[str, Any], form: Any) -> dict[str, Any]:
    """The fields of one event type's row the form changes (nothing: no request)."""
    event_type = current["event_type"]
    change: dict[str, Any] = {}
    if not current.get("critical"):
        choice = form.get(f"email.{event_type}")
        if choice in EMAIL_CHOICES and choice != email_choice(current):
            change["email_enabled"] = choice != "off"
            if choice != "off":
                change["email_frequency"] = choice
        in_app = checked(form.get(f"in_app.{event_type}"))
        if in_app != bool(current.get("in_app_enabled")):
            change["in_app_enabled"] = in_app
    return change


@router.post("/preferences", dependencies=[CsrfDep])
async def save_preferences(request: Request, state: StateDep, api: UserApiDep) -> Response:
    """One form for every event type; only the rows it changes are sent (one ``PUT`` each)."""
    form = await request.form()
    current = (await api.get("/notifications/preferences"))["items"]
    changes = {p["event_type"]: wanted_change(p, form) for p in current}
    try:
        await asyncio.gather(
            *(
                api.json("PUT", f"/notifications/preferences/{event_type}", json=change)
                for event_type, change in changes.items()
                if change
            )
        )
    except ApiProblem as exc:
        error = user_error(exc)
        return await preferences_page(request, state, api, error=error, status=exc.status)
    return RedirectResponse("/notifications/preferences?saved=1", status_code=303)


@router.post("/timezone", dependencies=[CsrfDep])
async def save_timezone(
    request: Request,
    state: StateDep,
    api: UserApiDep,
    timezone: Annotated[str, Form(max_length=100)],
) -> Response:
    try:
        await api.json("PATCH", "/auth/me", json={"timezone": timezone})
    except ApiProblem as exc:
        error = user_error(exc)
        return await preferences_page(request, state, api, error=error, status=exc.status)
    return RedirectResponse("/notifications/preferences?saved=tz", status_code=303)


@router.get("/emails")
async def emails(
    request: Request, state: StateDep, api: UserApiDep, cursor: Cursor = ""
) -> Response:
    found, unread = await with_unread(
        api, api.get("/notifications/emails", limit=PAGE_SIZE, cursor=cursor)
    )
    next_url = None
    if found.get("next_cursor"):
        next_url = f"/notifications/emails?cursor={quote(found['next_cursor'])}"
    context = {"items": found["items"], "unread": unread, "next_url": next_url}
    return page(request, state.templates, "notification_emails.html", context)
