"""The console's request plumbing: its state, the signed-in user, CSRF checks, cookies, the
security headers (a strict CSP) and where an expired session sends the browser."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from fastapi import Depends, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runyard.console.config import Settings
from runyard.console.gateway import Gateway, SessionExpired, UserApi
from runyard.console.session import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    Session,
    Sessions,
    session_token_valid,
)

#: Nothing inline, nothing from elsewhere: scripts, styles, images and connections from this
#: origin only; no frames, no plugins, forms post here only.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; manifest-src 'self'; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'; object-src 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=()"),
]


@dataclass
class ConsoleState:
    settings: Settings
    sessions: Sessions
    gateway: Gateway
    templates: Jinja2Templates
    hub: Any = None  # live.Hub, when live updates are on
    extra: dict[str, Any] = field(default_factory=dict)


def console_state(request: Request) -> ConsoleState:
    state: ConsoleState = request.app.state.console
    return state


async def state_of(request: Request) -> ConsoleState:
    """``console_state`` as a dependency (async: a plain ``def`` runs in the thread pool)."""
    return console_state(request)


StateDep = Annotated[ConsoleState, Depends(state_of)]


class LoginRequired(Exception):
    """No session, or one that is over: sign in, then come back to ``next``."""

    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


class CsrfRefused(Exception):
    pass


def safe_next(value: str | None) -> str:
    """A path on this site to return to after signing in; anything else goes to the start."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/experiments"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return "/experiments"
    return value


def wants_json(request: Request) -> bool:
    return request.url.path.startswith("/console-api/") or request.url.path == "/events"


def here(request: Request) -> str:
    """The page to come back to: for a script's request, the page that made it; for a form,
    the page it was sent from."""
    if wants_json(request):
        return safe_next(request.headers.get("x-console-page"))
    if request.method not in ("GET", "HEAD"):
        referer = urlsplit(request.headers.get("referer") or "")
        host = request.headers.get("x-forwarded-host") or request.headers.get("host")
        if referer.netloc and referer.netloc == host:
            return safe_next(referer.path + (f"?{referer.query}" if referer.query else ""))
        return "/experiments"
    path = request.url.path
    return path + (f"?{request.url.query}" if request.url.query else "")


async def current_session(request: Request, state: StateDep) -> Session:
    session = state.sessions.open(request.cookies.get(SESSION_COOKIE))
    if session is None:
        raise LoginRequired(here(request))
    request.state.session = session
    return session


SessionDep = Annotated[Session, Depends(current_session)]


async def user_api(request: Request, state: StateDep, session: SessionDep) -> UserApi:
    return UserApi(state.gateway, request, session)


UserApiDep = Annotated[UserApi, Depends(user_api)]


def check_origin(request: Request) -> None:
    """A state-changing request from another site is refused whatever it carries."""
    origin = request.headers.get("origin")
    if origin and origin != "null":
        host = request.headers.get("x-forwarded-host") or request.headers.get("host") or ""
        if urlsplit(origin).netloc != host:
            raise CsrfRefused
    elif origin == "null":
        raise CsrfRefused


async def require_csrf(request: Request, session: SessionDep) -> None:
    """Signed-in POSTs carry the session's token, in the form or in ``X-CSRF-Token``."""
    check_origin(request)
    token = request.headers.get("x-csrf-token")
    if token is None:
        form = await request.form()
        value = form.get("csrf_token")
        token = value if isinstance(value, str) else None
    if not session_token_valid(session, token):
        raise CsrfRefused


CsrfDep = Depends(require_csrf)


async def require_anonymous_csrf(request: Request, state: StateDep) -> None:
    """The sign-in and register forms: the token must be the HMAC of this browser's nonce."""
    check_origin(request)
    form = await request.form()
    token = form.get("csrf_token")
    nonce = request.cookies.get(CSRF_COOKIE)
    if not state.sessions.anonymous_token_valid(nonce, token if isinstance(token, str) else None):
        raise CsrfRefused


AnonymousCsrfDep = Depends(require_anonymous_csrf)


def set_cookie(
    response: Response, settings: Settings, name: str, value: str, *, max_age: int, path: str = "/"
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=path,
        httponly=True,
        secure=settings.secure_cookies,
        samesite="lax",
    )


def clear_cookie(response: Response, settings: Settings, name: str, *, path: str = "/") -> None:
    response.delete_cookie(
        name, path=path, httponly=True, secure=settings.secure_cookies, samesite="lax"
    )


def login_redirect(request: Request, next_url: str) -> Response:
    target = f"/login?next={quote(safe_next(next_url), safe='/')}"
    if wants_json(request):
        return JSONResponse(
            {"title": "Sign in again", "status": 401, "login": target}, status_code=401
        )
    return RedirectResponse(target, status_code=303)


class ConsoleHeadersMiddleware:
    """The security headers on every answer, and the session cookie written again when this
    request renewed the user's tokens (``request.state.session_changed``)."""

    def __init__(self, app: ASGIApp, *, sessions: Sessions, settings: Settings) -> None:
        self.app = app
        self.sessions = sessions
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in SECURITY_HEADERS if k not in present]
                if b"cache-control" not in present:
                    static = scope["path"].startswith("/static/")
                    headers.append((b"cache-control", b"no-cache" if static else b"no-store"))
                changed = scope.get("state", {}).get("session_changed")
                if isinstance(changed, Session) and b"set-cookie" not in present:
                    probe = Response()
                    set_cookie(
                        probe,
                        self.settings,
                        SESSION_COOKIE,
                        self.sessions.seal(changed),
                        max_age=self.sessions.max_age_s,
                    )
                    headers += [(k, v) for k, v in probe.raw_headers if k == b"set-cookie"]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def expired(request: Request, exc: Exception) -> Response:
    """SessionExpired and LoginRequired: forget the session, sign in, come back here."""
    next_url = exc.next_url if isinstance(exc, LoginRequired) else here(request)
    response = login_redirect(request, next_url)
    clear_cookie(response, console_state(request).settings, SESSION_COOKIE)
    request.state.session_changed = None
    return response


__all__ = ["SessionExpired"]
