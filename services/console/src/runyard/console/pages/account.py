"""The account pages. Signed in: the profile (name, time zone, email address) and a new
password, both through ``PATCH /auth/me`` with the step-up the API asks for (the current
password, or a 2FA code). Signed out, the pages the emails link to: a forgotten password,
choosing a new one with a reset link, following a verification link.

The links carry their token in the URL fragment (``#token=...``), which no server sees; the
pages' module (``static/js/account.js``) puts it into the form, and the form posts it here with
the sign-in forms' CSRF token. The API's answers are shown as it states them, except that a
reset request always gets the same answer (the API's is the same for every address too).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from runyard.console import auth_client
from runyard.console.gateway import ApiProblem, UserApi, client_headers
from runyard.console.pages.auth import anonymous_page
from runyard.console.pages.forms import user_error, with_unread
from runyard.console.pages.notifications import time_zones
from runyard.console.render import page
from runyard.console.session import PENDING_COOKIE, SESSION_COOKIE
from runyard.console.web import AnonymousCsrfDep, CsrfDep, StateDep, UserApiDep, clear_cookie

router = APIRouter(prefix="/account")

Field = Annotated[str, Form(max_length=1000)]

#: where a successful reset sends the browser: sign in, with the login page's message
RESET_DONE = "/login?notice=password-reset"


def _fail_on_outage(answer: auth_client.Answer) -> None:
    if answer.status >= 500:
        raise ApiProblem(answer.status, answer.problem or {})


def api_refusal(answer: auth_client.Answer) -> dict[str, Any]:
    """The API's refusal as it states it: its ``detail`` and each of its ``errors``."""
    problem = answer.problem or {}
    error = str(problem.get("detail") or problem.get("title") or "Refused.")
    if answer.status == 429:
        wait = answer.retry_after
        error += f" Try again in {wait} s." if wait else " Try again later."
    items = []
    for item in problem.get("errors") or []:
        if not isinstance(item, dict):
            continue
        where = ".".join(str(part) for part in (item.get("loc") or [])[1:])
        message = str(item.get("msg") or "")
        items.append(f"{where}: {message}" if where else message)
    return {"error": error, "error_list": items}


@router.get("/forgot-password")
async def forgot_password_form(request: Request, state: StateDep) -> Response:
    return anonymous_page(request, state, "forgot_password.html", {})


@router.post("/forgot-password", dependencies=[AnonymousCsrfDep])
async def forgot_password(request: Request, state: StateDep, email: Field) -> Response:
    answer = await auth_client.request_password_reset(
        state.gateway.http, email.strip(), headers=client_headers(request)
    )
    _fail_on_outage(answer)
    if answer.ok:
        # the same page for every address: the console adds nothing the API does not say
        return anonymous_page(request, state, "forgot_password.html", {"sent": True})
    context = {"email": email, **api_refusal(answer)}
    return anonymous_page(request, state, "forgot_password.html", context, status=answer.status)


@router.get("/reset-password")
async def reset_password_form(request: Request, state: StateDep) -> Response:
    """The token arrives in the fragment, never in the query: a ``?token=`` is not read."""
    return anonymous_page(request, state, "reset_password.html", {})


@router.post("/reset-password", dependencies=[AnonymousCsrfDep])
async def reset_password(
    request: Request,
    state: StateDep,
    password: Field,
    password_confirmation: Field,
    token: Field = "",
) -> Response:
    token = token.strip()
    context: dict[str, Any]
    if not token:
        context = {"error": "Open the link from the email again: it carries the token."}
        return anonymous_page(request, state, "reset_password.html", context, status=400)
    if password != password_confirmation:
        context = {"token": token, "error": "The two passwords differ; type the same one twice."}
        return anonymous_page(request, state, "reset_password.html", context, status=400)
    answer = await auth_client.confirm_password_reset(
        state.gateway.http, token, password, headers=client_headers(request)
    )
    _fail_on_outage(answer)
    if answer.ok:
        # every session of the account has ended: this browser's too
        response = RedirectResponse(RESET_DONE, status_code=303)
        clear_cookie(response, state.settings, SESSION_COOKIE)
        clear_cookie(response, state.settings, PENDING_COOKIE)
        return response
    context = api_refusal(answer)
    if answer.status == 400:  # unknown, used or expired: only a new link helps
        context["link_dead"] = True
    else:  # the policy refused the password, or too many tries: the link still works
        context["token"] = token
    return anonymous_page(request, state, "reset_password.html", context, status=answer.status)


@router.get("/verify-email")
async def verify_email_form(request: Request, state: StateDep) -> Response:
    return anonymous_page(request, state, "verify_email.html", {})


@router.post("/verify-email", dependencies=[AnonymousCsrfDep])
async def verify_email(request: Request, state: StateDep, token: Field = "") -> Response:
    token = token.strip()
    if not token:
        context = {"error": "Open the link from the email again: it carries the token."}
        return anonymous_page(request, state, "verify_email.html", context, status=400)
    answer = await auth_client.verify_email(
        state.gateway.http, token, headers=client_headers(request)
    )
    _fail_on_outage(answer)
    if answer.ok:
        return anonymous_page(request, state, "verify_email.html", {"verified": True})
    context = api_refusal(answer)
    return anonymous_page(request, state, "verify_email.html", context, status=answer.status)


PROFILE_NOTICES = {
    "profile": "Profile saved.",
    "email": "Follow the link sent to the new address: it takes effect then.",
    "password": "Password changed. Every other session of the account has ended.",
}


async def profile_page(
    request: Request,
    state: StateDep,
    api: UserApi,
    *,
    notice: str = "",
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    me, unread = await with_unread(api, api.get("/auth/me"))
    context = {
        "me": me,
        "zones": time_zones(),
        "notice": notice,
        "errors": errors or {},
        "unread": unread,
    }
    return page(request, state.templates, "account.html", context, status_code=status)


@router.get("")
async def profile(request: Request, state: StateDep, api: UserApiDep, saved: str = "") -> Response:
    return await profile_page(request, state, api, notice=PROFILE_NOTICES.get(saved, ""))


async def change_me(
    request: Request, state: StateDep, api: UserApi, form: str, body: dict[str, Any]
) -> Response:
    """One ``PATCH /auth/me``; a refusal is shown at the form that was sent."""
    try:
        await api.json("PATCH", "/auth/me", json=body)
    except ApiProblem as exc:
        errors = {form: user_error(exc)}
        return await profile_page(request, state, api, errors=errors, status=exc.status)
    return RedirectResponse(f"/account?saved={form}", status_code=303)


@router.post("/profile", dependencies=[CsrfDep])
async def save_profile(
    request: Request,
    state: StateDep,
    api: UserApiDep,
    timezone: Annotated[str, Form(max_length=100)],
    full_name: Field = "",
) -> Response:
    body = {"full_name": full_name.strip() or None, "timezone": timezone}
    return await change_me(request, state, api, "profile", body)


@router.post("/email", dependencies=[CsrfDep])
async def change_email(
    request: Request,
    state: StateDep,
    api: UserApiDep,
    email: Field,
    current_password: Field = "",
    code: Field = "",
) -> Response:
    body = {
        "email": email.strip(),
        "current_password": current_password or None,
        "code": code.strip() or None,
    }
    return await change_me(request, state, api, "email", body)


@router.post("/password", dependencies=[CsrfDep])
async def change_password(
    request: Request,
    state: StateDep,
    api: UserApiDep,
    current_password: Field,
    new_password: Field,
    new_password_confirmation: Field,
) -> Response:
    if new_password != new_password_confirmation:
        errors = {"password": "The two new passwords differ; type the same one twice."}
        return await profile_page(request, state, api, errors=errors, status=400)
    body = {"current_password": current_password, "new_password": new_password}
    return await change_me(request, state, api, "password", body)
