"""Admin pages: users (search, role, deactivate and reactivate, lift a lockout), the gateway's
request metrics per endpoint over time (uPlot charts), and the audit log with its filters.

Only admins see them: the console refuses anyone whose session says otherwise before it asks the
API (a 403 page, and no nav entry), and the API refuses a session whose role changed since it
began (its 403 becomes the same page). Everything here is a read or a change through the public
API with the admin's own token, as the other pages do: the console keeps nothing.
"""

from __future__ import annotations

import asyncio
import json
import math
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import RedirectResponse, Response
from starlette.exceptions import HTTPException

from runyard.console.gateway import ApiProblem, UserApi
from runyard.console.pages.experiments import unread_count
from runyard.console.pages.forms import refusal_text, user_error, with_unread
from runyard.console.render import page
from runyard.console.session import Session
from runyard.console.web import CsrfDep, SessionDep, StateDep, UserApiDep


async def require_admin(session: SessionDep) -> Session:
    """Signed in (else the sign-in page) and an admin (else 403, before any API call)."""
    if session.role != "admin":
        raise HTTPException(403, "This part of the console is for admins.")
    return session


router = APIRouter(prefix="/admin", dependencies=[Depends(require_admin)])

ROLES = ("admin", "user", "viewer")
PAGE_SIZE = 50
#: the chart periods: (label, how far back, the API's aggregation, its step in seconds)
PERIODS = {
    "1h": ("last hour", timedelta(hours=1), "minute", 60),
    "6h": ("last 6 hours", timedelta(hours=6), "minute", 60),
    "24h": ("last 24 hours", timedelta(hours=24), "hour", 3600),
    "7d": ("last 7 days", timedelta(days=7), "hour", 3600),
}
#: summary rows read for one page at most (pages of 500): the overview table of a busy week is
#: cut there, and says so
METRICS_READ_PAGES = 8
NOTICES = {
    "role": "Role changed.",
    "deactivated": "Account deactivated: its sessions have ended.",
    "activated": "Account reactivated.",
    "unlocked": "Account unlocked.",
}
FilterText = Annotated[str, Form(max_length=300)]


@router.get("")
async def admin_home() -> Response:
    return RedirectResponse("/admin/users", status_code=303)


# --- users ------------------------------------------------------------------------------------


def users_query(q: str, role: str, active: str) -> dict[str, str]:
    """The list's filters as the page's own query (empty ones left out)."""
    return {k: v for k, v in {"q": q, "role": role, "active": active}.items() if v}


def locked(user: dict[str, Any], now: datetime | None = None) -> bool:
    until = user.get("locked_until")
    if not until:
        return False
    moment = datetime.fromisoformat(str(until).replace("Z", "+00:00"))
    return moment > (now or datetime.now(UTC))


async def users_page(
    request: Request,
    state: StateDep,
    api: UserApi,
    *,
    q: str = "",
    role: str = "",
    active: str = "",
    cursor: str = "",
    notice: str = "",
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    params: dict[str, Any] = {
        "q": q.strip() or None,
        "role": role if role in ROLES else None,
        "is_active": {"yes": "true", "no": "false"}.get(active),
        "limit": PAGE_SIZE,
        "cursor": cursor or None,
    }
    try:
        found, unread = await with_unread(api, api.get("/auth/users", **params))
    except ApiProblem as exc:
        if cursor and 400 <= exc.status < 500:
            # a stale or altered cursor: the first page again (docs/api.md, Pagination)
            query = urlencode(users_query(q, role, active))
            return RedirectResponse(f"/admin/users?{query}", status_code=303)
        raise
    filters = users_query(q, role, active)
    next_cursor = found.get("next_cursor")
    context = {
        "users": found["items"],
        "locked": {str(u["id"]) for u in found["items"] if locked(u)},
        "filters": {"q": q, "role": role, "active": active},
        "roles": ROLES,
        "back": urlencode({**filters, **({"cursor": cursor} if cursor else {})}),
        "next_url": f"/admin/users?{urlencode({**filters, 'cursor': next_cursor})}"
        if next_cursor
        else "",
        "first_url": f"/admin/users?{urlencode(filters)}" if cursor else "",
        "notice": notice,
        "errors": errors or {},
        "unread": unread,
    }
    return page(request, state.templates, "admin_users.html", context, status_code=status)


@router.get("/users")
async def users(
    request: Request,
    state: StateDep,
    api: UserApiDep,
    q: str = "",
    role: str = "",
    active: str = "",
    cursor: str = "",
    done: str = "",
) -> Response:
    return await users_page(
        request,
        state,
        api,
        q=q[:100],
        role=role,
        active=active,
        cursor=cursor[:2000],
        notice=NOTICES.get(done, ""),
    )


def back_to_users(back: str, done: str) -> Response:
    """Back to the list as it was (its filters and page), with what was done."""
    kept = {k: v for k, v in _parse_query(back).items() if k in ("q", "role", "active", "cursor")}
    return RedirectResponse(f"/admin/users?{urlencode({**kept, 'done': done})}", status_code=303)


def _parse_query(text: str) -> dict[str, str]:
    return dict(parse_qsl(text, keep_blank_values=False))


async def change_user(
    request: Request,
    state: StateDep,
    api: UserApi,
    user_id: uuid.UUID,
    back: str,
    done: str,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
) -> Response:
    """One change; the API's refusal (the last active admin, a role it does not know) is shown
    at the user's row, with the list as it was."""
    try:
        await api.json(method, path, json=body)
    except ApiProblem as exc:
        error = user_error(exc)
        kept = _parse_query(back)
        return await users_page(
            request,
            state,
            api,
            q=kept.get("q", ""),
            role=kept.get("role", ""),
            active=kept.get("active", ""),
            cursor=kept.get("cursor", ""),
            errors={str(user_id): error},
            status=exc.status,
        )
    return back_to_users(back, done)


@router.post("/users/{user_id}/role", dependencies=[CsrfDep])
async def change_role(
    request: Request,
    state: StateDep,
    api: UserApiDep,
    user_id: uuid.UUID,
    role: Annotated[str, Form(max_length=20)],
    back: FilterText = "",
) -> Response:
    body = {"role": role}
    path = f"/auth/users/{user_id}"
    return await change_user(request, state, api, user_id, back, "role", "PATCH", path, body)


@router.post("/users/{user_id}/active", dependencies=[CsrfDep])
async def change_active(
    request: Request,
    state: StateDep,
    api: UserApiDep,
    user_id: uuid.UUID,
    is_active: Annotated[str, Form(max_length=10)],
    back: FilterText = "",
) -> Response:
    active = is_active == "true"
    done = "activated" if active else "deactivated"
    body = {"is_active": active}
    path = f"/auth/users/{user_id}"
    return await change_user(request, state, api, user_id, back, done, "PATCH", path, body)


@router.post("/users/{user_id}/unlock", dependencies=[CsrfDep])
async def unlock(
    request: Request, state: StateDep, api: UserApiDep, user_id: uuid.UUID, back: FilterText = ""
) -> Response:
    path = f"/auth/users/{user_id}/unlock"
    return await change_user(request, state, api, user_id, back, "unlocked", "POST", path)


# --- request metrics --------------------------------------------------------------------------


def _seconds(value: Any) -> float:
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def metric_series(
    rows: list[dict[str, Any]], *, since: float, until: float, step: int
) -> dict[str, list[float | None]]:
    """One endpoint's summary rows as the charts' columns, Unix seconds on x, a point per
    period from ``since`` to ``until``: a quiet period counts zero requests and has no latency
    (a gap in the latency lines, not a fall to zero)."""
    by_start = {int(_seconds(r["period_start"])): r for r in rows}
    first = int(since // step * step)
    last = int(until // step * step)
    xs = list(range(first, last + step, step))
    series: dict[str, list[float | None]] = {
        k: [] for k in ("x", "requests", "errors", "p50", "p95", "p99")
    }
    for x in xs:
        row = by_start.get(x)
        series["x"].append(float(x))
        series["requests"].append(float(row["total_requests"]) if row else 0.0)
        series["errors"].append(float(row["failed_requests"]) if row else 0.0)
        for p in ("p50", "p95", "p99"):
            value = row.get(f"{p}_response_time_ms") if row else None
            series[p].append(
                float(value) if value is not None and math.isfinite(float(value)) else None
            )
    return series


def endpoint_totals(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per ``METHOD route`` over the period: requests, errors, the worst p95 and p99 of its
    periods (percentiles do not add up across periods; the worst one is what an admin looks
    for). Busiest first, the ``*`` row (all requests) on top."""
    totals: dict[str, dict[str, Any]] = {}
    for r in rows:
        key = "*" if r["endpoint"] == "*" else f"{r['method']} {r['endpoint']}"
        entry = totals.setdefault(
            key, {"key": key, "requests": 0, "errors": 0, "p95": 0.0, "p99": 0.0}
        )
        entry["requests"] += int(r["total_requests"])
        entry["errors"] += int(r["failed_requests"])
        entry["p95"] = max(entry["p95"], float(r["p95_response_time_ms"]))
        entry["p99"] = max(entry["p99"], float(r["p99_response_time_ms"]))
    return sorted(totals.values(), key=lambda e: (e["key"] != "*", -e["requests"], e["key"]))


async def read_metrics(api: UserApi, **params: Any) -> tuple[list[dict[str, Any]], bool]:
    """Every summary row of the window (pages of 500, up to ``METRICS_READ_PAGES``); whether
    more were left unread."""
    rows: list[dict[str, Any]] = []
    cursor = None
    for _ in range(METRICS_READ_PAGES):
        found = await api.get("/admin/metrics", limit=500, cursor=cursor, **params)
        rows += found["items"]
        cursor = found.get("next_cursor")
        if not cursor:
            return rows, False
    return rows, True


@router.get("/metrics")
async def metrics(
    request: Request,
    state: StateDep,
    api: UserApiDep,
    endpoint: str = "*",
    period: str = "1h",
) -> Response:
    """The chosen endpoint's requests, errors and p50/p95/p99 over the chosen period, and every
    endpoint's totals (each a link that charts it)."""
    period = period if period in PERIODS else "1h"
    label, span, aggregation, step = PERIODS[period]
    endpoint = endpoint.strip()[:600] or "*"
    now = datetime.now(UTC)
    # from the start of the first period, so that the first point is a whole one
    since = datetime.fromtimestamp((now - span).timestamp() // step * step, UTC)
    window = {"aggregation": aggregation, "since": since.isoformat()}
    method, _, route = endpoint.partition(" ")
    chosen = {"endpoint": "*"} if endpoint == "*" else {"endpoint": route, "method": method}
    ((overview, cut), (selected, _)), unread = await with_unread(
        api, asyncio.gather(read_metrics(api, **window), read_metrics(api, **window, **chosen))
    )
    series = metric_series(selected, since=since.timestamp(), until=now.timestamp(), step=step)
    totals = endpoint_totals(overview)
    keys = [t["key"] for t in totals]
    if endpoint not in keys:
        keys.append(endpoint)
    context = {
        "endpoint": endpoint,
        "endpoints": keys,
        "period": period,
        "periods": {k: v[0] for k, v in PERIODS.items()},
        "period_label": label,
        "aggregation": aggregation,
        "totals": totals,
        "cut": cut,
        "series": json.dumps(series, separators=(",", ":")),
        "chart_requests": int(sum(v or 0 for v in series["requests"])),
        "unread": unread,
    }
    return page(request, state.templates, "admin_metrics.html", context)


# --- audit log --------------------------------------------------------------------------------


def parse_moment(value: str) -> datetime | None:
    """A ``datetime-local`` field (read as UTC, as the page says) or an ISO time; None when
    empty; ValueError when neither."""
    value = value.strip()
    if not value:
        return None
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


async def actor_id(api: UserApi, actor: str) -> str:
    """The user id of a username, an email address or an id; ValueError naming the problem."""
    try:
        return str(uuid.UUID(actor))
    except ValueError:
        pass
    found = await api.get("/auth/users", q=actor[:100], limit=100)
    wanted = actor.lower()
    for user in found["items"]:
        if wanted in (str(user["username"]).lower(), str(user["email"]).lower()):
            return str(user["id"])
    raise ValueError(f"No user is called “{actor}”.")


@router.get("/audit")
async def audit(
    request: Request,
    state: StateDep,
    api: UserApiDep,
    actor: str = "",
    action: str = "",
    status: str = "",
    since: str = "",
    until: str = "",
    cursor: str = "",
) -> Response:
    """The audit trail, newest first. Each filter's mistake is shown at its field and the list
    is left empty rather than silently unfiltered."""
    filters = {
        "actor": actor.strip()[:254],
        "action": action.strip()[:600],
        "status": status if status in ("success", "failure") else "",
        "since": since.strip()[:40],
        "until": until.strip()[:40],
    }
    errors: dict[str, str] = {}
    params: dict[str, Any] = {
        "action": filters["action"],
        "status": filters["status"],
        "limit": PAGE_SIZE,
        "cursor": cursor[:2000],
    }
    for name in ("since", "until"):
        try:
            moment = parse_moment(filters[name])
        except ValueError:
            errors[name] = "A date and time, such as 2026-12-06T09:30."
        else:
            params[name] = moment.isoformat() if moment else None
    if filters["actor"]:
        try:
            params["user_id"] = await actor_id(api, filters["actor"])
        except ValueError as exc:
            errors["actor"] = str(exc)
    entries: dict[str, Any] = {"items": [], "next_cursor": None}
    code = 200
    if not errors:
        try:
            entries = await api.get("/admin/audit-log", **params)
        except ApiProblem as exc:
            if cursor and 400 <= exc.status < 500:
                query = urlencode({k: v for k, v in filters.items() if v})
                return RedirectResponse(f"/admin/audit?{query}", status_code=303)
            if exc.status != 422:
                raise
            errors["form"] = refusal_text(exc.problem)
    if errors:
        code = 400 if "form" not in errors else 422
    unread = await unread_count(api)
    kept = {k: v for k, v in filters.items() if v}
    next_cursor = entries.get("next_cursor")
    context = {
        "entries": entries["items"],
        "filters": filters,
        "errors": errors,
        "next_url": f"/admin/audit?{urlencode({**kept, 'cursor': next_cursor})}"
        if next_cursor
        else "",
        "first_url": f"/admin/audit?{urlencode(kept)}" if cursor else "",
        "unread": unread,
    }
    return page(request, state.templates, "admin_audit.html", context, status_code=code)


@router.get("/audit/request")
async def audit_request(
    request: Request,
    state: StateDep,
    api: UserApiDep,
    request_id: Annotated[str, Query(max_length=128)],
    user_id: uuid.UUID,
    at: Annotated[str, Query(max_length=40)],
) -> Response:
    """One audited request as the gateway logged it (its redacted bodies show *what* changed:
    the audit row says only who called which route). The log has no index on request ids: the
    read is narrowed to the caller and a few minutes around the audit row's time."""
    try:
        moment = parse_moment(at) or datetime.now(UTC)
    except ValueError:
        moment = datetime.now(UTC)
    (found, unread) = await with_unread(
        api,
        api.get(
            "/admin/request-logs",
            request_id=request_id,
            user_id=str(user_id),
            since=(moment - timedelta(minutes=5)).isoformat(),
            until=(moment + timedelta(minutes=5)).isoformat(),
            limit=1,
        ),
    )
    if not found["items"]:
        raise ApiProblem(404, {"title": "Not found", "status": 404})
    entry = found["items"][0]
    context = {
        "entry": entry,
        "request_body": pretty(entry.get("request_payload_sample")),
        "response_body": pretty(entry.get("response_payload_sample")),
        "unread": unread,
    }
    return page(request, state.templates, "admin_request.html", context)


def pretty(value: Any) -> str:
    return "" if value is None else json.dumps(value, indent=2, sort_keys=True)
