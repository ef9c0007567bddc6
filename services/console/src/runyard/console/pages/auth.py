"""Sign in (with the two-factor step), register, sign out."""

from __future__ import annotations

import contextlib
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from runyard.console import auth_client
from runyard.console.gateway import SessionExpired, UserApi, client_headers
from runyard.console.render import page
from runyard.console.session import (
    CSRF_COOKIE,
    PENDING_COOKIE,
    PENDING_MAX_AGE_S,
    SESSION_COOKIE,
    Session,
    new_nonce,
)
from runyard.console.web import (
    AnonymousCsrfDep,
    ConsoleState,
    CsrfDep,
    SessionDep,
    StateDep,
    clear_cookie,
    safe_next,
    set_cookie,
)

router = APIRouter()

Field = Annotated[str, Form(max_length=1000)]
NextField = Annotated[str, Form(max_length=2000)]
#: the messages the sign-in page shows for ``?notice=``; any other value shows nothing
LOGIN_NOTICES = {
    "password-reset": "Your new password is set and every session of the account has ended. "
    "Sign in with the new password.",
}


def anonymous_page(
    request: Request, state: ConsoleState, name: str, context: dict[str, Any], status: int = 200
) -> Response:
    """A sign-in form: its CSRF token is the HMAC of a random cookie of this browser."""
    nonce = request.cookies.get(CSRF_COOKIE) or new_nonce()
    context = {**context, "csrf_token": state.sessions.anonymous_token(nonce)}
    response = page(request, state.templates, name, context, status_code=status)
    if request.cookies.get(CSRF_COOKIE) != nonce:
        set_cookie(response, state.settings, CSRF_COOKIE, nonce, max_age=24 * 3600)
    return response


def refusal(problem: dict[str, Any] | None, retry_after: str | None = None) -> str:
    if not problem:
        return "Something went wrong; try again."
    status = problem.get("status")
    if status in (423, 429):
        wait = f" Try again in {retry_after} s." if retry_after else " Try again later."
        return str(problem.get("detail") or problem.get("title")) + wait
    if status == 401:
        return "Wrong username, email or password."
    if errors := problem.get("errors"):
        return "; ".join(f"{'.'.join(map(str, e['loc'][1:]))}: {e['msg']}" for e in errors)
    return str(problem.get("detail") or problem.get("title") or "Refused.")


async def signed_in(
    request: Request, state: ConsoleState, tokens: auth_client.Tokens, next_url: str
) -> Response:
    """Seal the tokens into the session cookie and go where the user was going."""
    user = await auth_client.me(
        state.gateway.http, tokens.access_token, headers=client_headers(request)
    )
    session = Session(
        access_token=tokens.access_token,
        refresh_token=tokens.refresh_token,
        user_id=str(user["id"]),
        username=str(user["username"]),
        role=str(user["role"]),
        access_expires_at=tokens.access_expires_at,
    )
    response = RedirectResponse(safe_next(next_url), status_code=303)
    set_cookie(
        response,
        state.settings,
        SESSION_COOKIE,
        state.sessions.seal(session),
        max_age=state.sessions.max_age_s,
    )
    clear_cookie(response, state.settings, PENDING_COOKIE)
    return response


@router.get("/login")
async def login_form(
    request: Request, state: StateDep, next: str = "/experiments", notice: str = ""
) -> Response:
    if state.sessions.open(request.cookies.get(SESSION_COOKIE)) is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    context = {"next": safe_next(next), "notice": LOGIN_NOTICES.get(notice)}
    return anonymous_page(request, state, "login.html", context)


@router.post("/login", dependencies=[AnonymousCsrfDep])
async def login(
    request: Request,
    state: StateDep,
    login: Field,
    password: Field,
    next: NextField = "/experiments",
) -> Response:
    result = await auth_client.login(
        state.gateway.http, login, password, headers=client_headers(request)
    )
    if result.tokens is not None:
        return await signed_in(request, state, result.tokens, next)
    if result.needs_code:
        response = RedirectResponse(
            f"/login/2fa?next={quote(safe_next(next), safe='/')}", status_code=303
        )
        set_cookie(
            response,
            state.settings,
            PENDING_COOKIE,
            state.sessions.seal_pending(login, password),
            max_age=PENDING_MAX_AGE_S,
        )
        return response
    error = refusal(result.problem, result.retry_after)
    context = {"next": safe_next(next), "login": login, "error": error}
    return anonymous_page(request, state, "login.html", context, status=401)


@router.get("/login/2fa")
async def two_factor_form(
    request: Request, state: StateDep, next: str = "/experiments"
) -> Response:
    if state.sessions.open_pending(request.cookies.get(PENDING_COOKIE)) is None:
        return RedirectResponse(f"/login?next={quote(safe_next(next), safe='/')}", status_code=303)
    return anonymous_page(request, state, "two_factor.html", {"next": safe_next(next)})


@router.post("/login/2fa", dependencies=[AnonymousCsrfDep])
async def two_factor(
    request: Request,
    state: StateDep,
    code: Annotated[str, Form(max_length=64)],
    next: NextField = "/experiments",
) -> Response:
    pending = state.sessions.open_pending(request.cookies.get(PENDING_COOKIE))
    if pending is None:
        context = {"next": safe_next(next), "error": "That took too long: sign in again."}
        return anonymous_page(request, state, "login.html", context, status=401)
    result = await auth_client.login(
        state.gateway.http,
        pending[0],
        pending[1],
        totp_code=code.strip().replace(" ", ""),
        headers=client_headers(request),
    )
    if result.tokens is not None:
        return await signed_in(request, state, result.tokens, next)
    error = (
        "That code is not right; try the current one."
        if result.needs_code or (result.problem or {}).get("status") == 401
        else refusal(result.problem, result.retry_after)
    )
    context = {"next": safe_next(next), "error": error}
    return anonymous_page(request, state, "two_factor.html", context, status=401)


@router.get("/register")
async def register_form(request: Request, state: StateDep) -> Response:
    return anonymous_page(request, state, "register.html", {})


@router.post("/register", dependencies=[AnonymousCsrfDep])
async def register(
    request: Request,
    state: StateDep,
    username: Field,
    email: Field,
    password: Field,
) -> Response:
    problem = await auth_client.register(
        state.gateway.http,
        username=username,
        email=email,
        password=password,
        headers=client_headers(request),
    )
    if problem is not None:
        context = {"username": username, "email": email, "error": refusal(problem)}
        return anonymous_page(request, state, "register.html", context, status=400)
    result = await auth_client.login(
        state.gateway.http, username, password, headers=client_headers(request)
    )
    if result.tokens is None:
        return RedirectResponse("/login", status_code=303)
    return await signed_in(request, state, result.tokens, "/experiments")


@router.post("/logout", dependencies=[CsrfDep])
async def logout(request: Request, state: StateDep, session: SessionDep) -> Response:
    api = UserApi(state.gateway, request, session)
    with contextlib.suppress(SessionExpired):  # over already
        await api.send("POST", "/auth/logout", json={"refresh_token": session.refresh_token})
    request.state.session_changed = None
    response = RedirectResponse("/login", status_code=303)
    clear_cookie(response, state.settings, SESSION_COOKIE)
    return response
