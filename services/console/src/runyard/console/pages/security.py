"""Account security: two-factor sign-in (enrolment with a QR code drawn here, backup codes shown
once), the account's sessions (end one, or every other) and its past sign-ins, and API keys
(created with scopes, an expiry and a rate limit, the key shown once; revoked; each key's use
over time).

The QR code is made on the server (segno) as an SVG ``data:`` image, which the CSP allows
(``img-src 'self' data:``): the secret never goes to a third party, and the page needs no
script for it. Nothing the API shows once (the TOTP secret, backup codes, a new key) is kept by
the console: it is in the one answer that shows it.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import segno
from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from runyard.console.gateway import ApiProblem, UserApi
from runyard.console.pages.forms import checked, user_error, with_unread
from runyard.console.render import page
from runyard.console.web import CsrfDep, StateDep, UserApiDep

router = APIRouter(prefix="/account")

Field = Annotated[str, Form(max_length=1000)]
SCOPES = {
    "experiments:read": "Read experiments, datasets, campaigns, jobs",
    "experiments:write": "Change experiments, datasets, campaigns, jobs",
    "notifications:read": "Read notifications",
    "notifications:write": "Change notification settings",
    "webhooks:read": "Read webhooks",
    "webhooks:write": "Change webhooks",
    "admin": "Everything (admins only)",
}
USAGE_READ = 500


def qr_data_uri(otpauth_uri: str) -> str:
    """The ``otpauth://`` URI as a QR code: an SVG ``data:`` URI for an ``<img>``."""
    code = segno.make(otpauth_uri, error="m")
    return str(code.svg_data_uri(scale=5, border=4, dark="#000", light="#fff"))


async def security_page(
    request: Request,
    state: StateDep,
    api: UserApi,
    *,
    notice: str = "",
    errors: dict[str, str] | None = None,
    backup_codes: list[str] | None = None,
    status: int = 200,
) -> Response:
    (me, sessions, history), unread = await with_unread(
        api,
        asyncio.gather(
            api.get("/auth/me"),
            api.get("/auth/sessions", limit=100),
            api.get("/auth/login-history", limit=50),
        ),
    )
    context = {
        "me": me,
        "sessions": sessions["items"],
        "history": history["items"],
        "notice": notice,
        "errors": errors or {},
        "backup_codes": backup_codes,
        "unread": unread,
    }
    return page(request, state.templates, "security.html", context, status_code=status)


NOTICES = {
    "2fa-off": "Two-factor sign-in is off.",
    "revoked": "The session has ended.",
}


@router.get("/security")
async def security(request: Request, state: StateDep, api: UserApiDep, done: str = "") -> Response:
    return await security_page(request, state, api, notice=NOTICES.get(done, ""))


def setup_page(
    request: Request, state: StateDep, setup: dict[str, Any], error: str = "", status: int = 200
) -> Response:
    context = {
        "secret": setup["secret"],
        "otpauth_uri": setup["otpauth_uri"],
        "qr": qr_data_uri(setup["otpauth_uri"]),
        "error": error,
    }
    return page(request, state.templates, "two_factor_setup.html", context, status_code=status)


@router.post("/2fa/setup", dependencies=[CsrfDep])
async def two_factor_setup(request: Request, state: StateDep, api: UserApiDep) -> Response:
    """A new secret (the API keeps it pending until a code from it turns 2FA on)."""
    setup = await api.json("POST", "/auth/2fa/setup")
    return setup_page(request, state, setup)


@router.post("/2fa/enable", dependencies=[CsrfDep])
async def two_factor_enable(
    request: Request,
    state: StateDep,
    api: UserApiDep,
    code: Field,
    current_password: Field,
    otpauth_uri: Field,
) -> Response:
    """On a wrong code the same QR code is shown again (its URI came back in the form: it is the
    page's own content, and the API checks the code against the secret it keeps)."""
    body = {"code": code.strip().replace(" ", ""), "current_password": current_password}
    try:
        enabled = await api.json("POST", "/auth/2fa/enable", json=body)
    except ApiProblem as exc:
        error = user_error(exc)
        secret = otpauth_uri.split("secret=", 1)[-1].split("&", 1)[0]
        setup = {"secret": secret, "otpauth_uri": otpauth_uri}
        return setup_page(request, state, setup, error=error, status=exc.status)
    return await security_page(
        request,
        state,
        api,
        notice="Two-factor sign-in is on.",
        backup_codes=list(enabled["backup_codes"]),
    )


@router.post("/2fa/disable", dependencies=[CsrfDep])
async def two_factor_disable(
    request: Request, state: StateDep, api: UserApiDep, code: Field
) -> Response:
    try:
        await api.json("POST", "/auth/2fa/disable", json={"code": code.strip()})
    except ApiProblem as exc:
        errors = {"two_factor": user_error(exc)}
        return await security_page(request, state, api, errors=errors, status=exc.status)
    return RedirectResponse("/account/security?done=2fa-off", status_code=303)


@router.post("/2fa/backup-codes", dependencies=[CsrfDep])
async def new_backup_codes(
    request: Request, state: StateDep, api: UserApiDep, code: Field
) -> Response:
    try:
        found = await api.json("POST", "/auth/2fa/backup-codes", json={"code": code.strip()})
    except ApiProblem as exc:
        errors = {"two_factor": user_error(exc)}
        return await security_page(request, state, api, errors=errors, status=exc.status)
    notice = "New backup codes: the old ones no longer work."
    return await security_page(
        request, state, api, notice=notice, backup_codes=list(found["backup_codes"])
    )


@router.post("/sessions/revoke-all", dependencies=[CsrfDep])
async def revoke_all(
    request: Request,
    state: StateDep,
    api: UserApiDep,
    revoke_api_keys: Annotated[str | None, Form(max_length=10)] = None,
) -> Response:
    """Every other session ends (this one stays: signing out is the button for it)."""
    body = {"include_current": False, "revoke_api_keys": checked(revoke_api_keys)}
    done = await api.json("POST", "/auth/sessions/revoke-all", json=body)
    ended, revoked = done["sessions_revoked"], done["api_keys_revoked"]
    notice = f"{ended} other session{'' if ended == 1 else 's'} ended"
    if body["revoke_api_keys"]:
        notice += f", {revoked} API key{'' if revoked == 1 else 's'} revoked"
    return await security_page(request, state, api, notice=notice + ".")


@router.post("/sessions/{session_id}/revoke", dependencies=[CsrfDep])
async def revoke_session(api: UserApiDep, session_id: uuid.UUID) -> Response:
    await api.json("DELETE", f"/auth/sessions/{session_id}")
    return RedirectResponse("/account/security?done=revoked", status_code=303)


# --- API keys -------------------------------------------------------------------------------


async def keys_page(
    request: Request,
    state: StateDep,
    api: UserApi,
    *,
    created: dict[str, Any] | None = None,
    form: dict[str, Any] | None = None,
    error: str = "",
    notice: str = "",
    status: int = 200,
) -> Response:
    (me, keys), unread = await with_unread(
        api, asyncio.gather(api.get("/auth/me"), api.get("/auth/api-keys", limit=100))
    )
    scopes = {k: v for k, v in SCOPES.items() if k != "admin" or me.get("role") == "admin"}
    context = {
        "me": me,
        "keys": keys["items"],
        "scopes": scopes,
        "created": created,
        "form": form or {"scopes": ["experiments:read"]},
        "error": error,
        "notice": notice,
        "unread": unread,
    }
    return page(request, state.templates, "api_keys.html", context, status_code=status)


@router.get("/api-keys")
async def api_keys(request: Request, state: StateDep, api: UserApiDep, done: str = "") -> Response:
    notice = "The key is revoked: requests with it are refused." if done == "revoked" else ""
    return await keys_page(request, state, api, notice=notice)


@router.post("/api-keys", dependencies=[CsrfDep])
async def create_key(
    request: Request,
    state: StateDep,
    api: UserApiDep,
    name: Annotated[str, Form(max_length=255)],
    scopes: Annotated[list[str] | None, Form()] = None,
    expires_in_days: Annotated[str, Form(max_length=10)] = "",
    rate_limit: Annotated[str, Form(max_length=10)] = "",
    current_password: Field = "",
    code: Field = "",
) -> Response:
    """The answer shows the key: the only time anyone sees it (the API keeps its hash)."""
    form = {"name": name, "scopes": scopes or [], "expires": expires_in_days, "rate": rate_limit}
    try:
        days = int(expires_in_days) if expires_in_days.strip() else None
        limit = int(rate_limit) if rate_limit.strip() else None
    except ValueError:
        error = "Expiry and rate limit are whole numbers (or empty for none)."
        return await keys_page(request, state, api, form=form, error=error, status=400)
    body: dict[str, Any] = {
        "name": name.strip(),
        "scopes": scopes or [],
        "rate_limit": limit,
        "current_password": current_password or None,
        "code": code.strip() or None,
    }
    if days is not None:
        body["expires_at"] = (datetime.now(UTC) + timedelta(days=days)).isoformat()
    try:
        created = await api.json("POST", "/auth/api-keys", json=body)
    except ApiProblem as exc:
        error = user_error(exc)
        return await keys_page(request, state, api, form=form, error=error, status=exc.status)
    return await keys_page(request, state, api, created=created)


@router.post("/api-keys/{key_id}/revoke", dependencies=[CsrfDep])
async def revoke_key(api: UserApiDep, key_id: uuid.UUID) -> Response:
    await api.json("DELETE", f"/auth/api-keys/{key_id}")
    return RedirectResponse("/account/api-keys?done=revoked", status_code=303)


#: the chart's buckets by how far back the requests read go: (longest span, bucket, least shown)
USAGE_STEPS = ((6 * 3600, 60, 60), (14 * 86400, 3600, 24), (None, 86400, 30))


def usage_series(items: list[dict[str, Any]], now: float | None = None) -> dict[str, list[float]]:
    """Requests per minute (per hour, per day when they span longer), and how many of them were
    refused (status 400 and up): the chart's two lines, Unix seconds on x. The buckets run up
    to now, with empty ones as zeros, so a quiet key shows as quiet."""
    moments = []
    for item in items:
        try:
            moment = datetime.fromisoformat(str(item["timestamp"]).replace("Z", "+00:00"))
        except (KeyError, ValueError):
            continue
        moments.append((moment.timestamp(), int(item.get("status_code") or 0) >= 400))
    if not moments:
        return {"x": [], "requests": [], "errors": []}
    now = datetime.now(UTC).timestamp() if now is None else now
    span = now - min(m for m, _ in moments)
    step, least = next((s, n) for limit, s, n in USAGE_STEPS if limit is None or span <= limit)
    total: Counter[int] = Counter()
    refused: Counter[int] = Counter()
    for seconds, error in moments:
        bucket = int(seconds // step * step)
        total[bucket] += 1
        refused[bucket] += error
    last = max(int(now // step * step), max(total))
    first = min(min(total), last - (least - 1) * step)
    xs = list(range(first, last + step, step))
    return {
        "x": [float(x) for x in xs],
        "requests": [float(total[x]) for x in xs],
        "errors": [float(refused[x]) for x in xs],
    }


@router.get("/api-keys/{key_id}")
async def api_key(
    request: Request, state: StateDep, api: UserApiDep, key_id: uuid.UUID
) -> Response:
    """One key's use: the API's totals, a chart of the latest requests, and those requests."""
    (keys, usage), unread = await with_unread(
        api,
        asyncio.gather(
            api.get("/auth/api-keys", limit=500),
            api.get(f"/auth/api-keys/{key_id}/usage", limit=USAGE_READ),
        ),
    )
    key = next((k for k in keys["items"] if str(k["id"]) == str(key_id)), None)
    if key is None:
        raise ApiProblem(404, {"title": "Not found", "status": 404})
    context = {
        "key": key,
        "usage": usage,
        "series": json.dumps(usage_series(usage["items"]), separators=(",", ":")),
        "recent": usage["items"][:50],
        "unread": unread,
    }
    return page(request, state.templates, "api_key.html", context)
