"""The public auth API (``/api/v1/auth``), reached through the gateway.

Public routes (no identity): register, login, refresh, the JWKS. Everything else reads the
caller from the gateway's ``X-Runyard-*`` headers.
"""

from __future__ import annotations

import ipaddress
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse

from runyard.auth import accounts, api_keys, logins, pages, repository, two_factor
from runyard.auth.context import ContextDep
from runyard.auth.schemas import (
    AdminUpdateUserRequest,
    AdminUserOut,
    AdminUserPage,
    ApiKeyCreated,
    ApiKeyOut,
    ApiKeyPage,
    ApiKeyUsageOut,
    ApiUsageOut,
    BackupCodesOut,
    CodeRequest,
    CreateApiKeyRequest,
    JwkSet,
    LoginHistoryOut,
    LoginHistoryPage,
    LoginRequest,
    LogoutRequest,
    RefreshRequest,
    RegisterRequest,
    Role,
    SessionOut,
    SessionPage,
    TokenResponse,
    TwoFactorSetupOut,
    UpdateMeRequest,
    UserOut,
)
from runyard.shared.http import PROBLEM_JSON, ProblemError, problem_response
from runyard.shared.identity import CurrentPrincipal, Principal
from runyard.shared.runtime import SessionDep

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])

USER_AGENT_MAX = 512
API_KEY_METHOD = "api_key"

Limit = Annotated[int, Query(ge=1, le=500)]
_PROBLEM: dict[str, Any] = {"content": {PROBLEM_JSON: {"schema": {"type": "object"}}}}


def _valid_ip(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return None


async def client_info(request: Request) -> logins.ClientInfo:
    """Client address from the gateway's ``X-Forwarded-For`` (first entry), else the peer."""
    forwarded = request.headers.get("x-forwarded-for")
    ip = _valid_ip(forwarded.split(",")[0]) if forwarded else None
    if ip is None and request.client is not None:
        ip = _valid_ip(request.client.host)
    user_agent = request.headers.get("user-agent")
    return logins.ClientInfo(
        ip_address=ip, user_agent=user_agent[:USER_AGENT_MAX] if user_agent else None
    )


ClientDep = Annotated[logins.ClientInfo, Depends(client_info)]


async def current_session_id(principal: CurrentPrincipal) -> uuid.UUID | None:
    """The caller's login session (the token's ``sid``, signed into the forwarded identity by the
    gateway). Lets "revoke my other sessions" keep the caller's own."""
    try:
        return uuid.UUID(principal.session_id) if principal.session_id else None
    except ValueError:
        return None


CurrentSessionDep = Annotated[uuid.UUID | None, Depends(current_session_id)]


async def interactive(principal: CurrentPrincipal) -> Principal:
    """Account security (password, 2FA, sessions, keys) is not for API keys: only a login."""
    if principal.auth_method == API_KEY_METHOD:
        raise ProblemError(403, "Forbidden", "Log in to manage your account; API keys cannot.")
    return principal


InteractivePrincipal = Annotated[Principal, Depends(interactive)]


async def admin(principal: CurrentPrincipal) -> Principal:
    return accounts.require_admin(principal)


AdminPrincipal = Annotated[Principal, Depends(admin)]


def refused(request: Request, refusal: logins.Refusal) -> JSONResponse:
    return problem_response(
        request,
        status=refusal.status,
        title=refusal.title,
        detail=refusal.detail,
        headers=refusal.headers or None,
        **refusal.extra,
    )


def tokens_out(issued: logins.IssuedTokens) -> TokenResponse:
    return TokenResponse(
        access_token=issued.access_token,
        refresh_token=issued.refresh_token,
        expires_in=issued.expires_in,
        refresh_expires_in=issued.refresh_expires_in,
    )


# --- registration, login, tokens --------------------------------------------------------------


@router.post(
    "/register",
    status_code=201,
    response_model=UserOut,
    responses={
        409: {"description": "Username or email already taken", **_PROBLEM},
        422: {"description": "Invalid input, or a password the policy refuses", **_PROBLEM},
    },
)
async def register(body: RegisterRequest, session: SessionDep, ctx: ContextDep) -> UserOut:
    user = await accounts.create_user(
        session, ctx, username=body.username, email=body.email, password=body.password
    )
    return UserOut.model_validate(user)


@router.post(
    "/login",
    response_model=TokenResponse,
    responses={
        401: {
            "description": "Invalid credentials (one generic message for every cause), or "
            "`code: two_factor_required` when the password is right and a code is needed",
            **_PROBLEM,
        },
        423: {"description": "Locked after repeated failures; see `Retry-After`", **_PROBLEM},
        429: {"description": "Too many failures from this address; see `Retry-After`", **_PROBLEM},
    },
)
async def login(
    body: LoginRequest, request: Request, session: SessionDep, ctx: ContextDep, client: ClientDep
) -> TokenResponse | JSONResponse:
    outcome = await logins.log_in(
        session,
        ctx,
        login=body.login,
        password=body.password,
        totp_code=body.totp_code,
        client=client,
    )
    if isinstance(outcome, logins.Refusal):
        return refused(request, outcome)
    return tokens_out(outcome)


@router.post(
    "/refresh",
    response_model=TokenResponse,
    responses={401: {"description": "Unknown, expired, revoked or reused token", **_PROBLEM}},
)
async def refresh(
    body: RefreshRequest, request: Request, session: SessionDep, ctx: ContextDep, client: ClientDep
) -> TokenResponse | JSONResponse:
    """A new access token and a new refresh token; the one sent is used up. Sending a used-up
    refresh token again ends its session (it was copied)."""
    outcome = await logins.refresh(session, ctx, refresh_token=body.refresh_token, client=client)
    if isinstance(outcome, logins.Refusal):
        return refused(request, outcome)
    return tokens_out(outcome)


@router.post("/logout", status_code=204)
async def logout(
    session: SessionDep,
    ctx: ContextDep,
    principal: CurrentPrincipal,
    current: CurrentSessionDep,
    body: LogoutRequest | None = None,
) -> Response:
    """End a session: the one of `refresh_token`, else the session of this request."""
    await logins.log_out(
        session,
        ctx,
        refresh_token=body.refresh_token if body else None,
        session_id=current,
        user_id=principal.user_id,
    )
    return Response(status_code=204)


@router.get("/.well-known/jwks.json", response_model=JwkSet)
async def jwks(response: Response, ctx: ContextDep) -> dict[str, Any]:
    response.headers["Cache-Control"] = "public, max-age=300"
    return {"keys": [ctx.signing_key.public_jwk()]}


# --- me ---------------------------------------------------------------------------------------


@router.get("/me", response_model=UserOut)
async def me(session: SessionDep, principal: CurrentPrincipal) -> UserOut:
    user = await accounts.get_user(session, user_id=principal.user_id)
    return UserOut.model_validate(user)


@router.patch(
    "/me",
    response_model=UserOut,
    responses={
        403: {"description": "`current_password` is wrong", **_PROBLEM},
        409: {"description": "Email already taken", **_PROBLEM},
        423: {"description": "Locked after repeated failures", **_PROBLEM},
    },
)
async def update_me(
    body: UpdateMeRequest,
    request: Request,
    session: SessionDep,
    ctx: ContextDep,
    principal: InteractivePrincipal,
    client: ClientDep,
    current: CurrentSessionDep,
) -> UserOut | JSONResponse:
    """Profile, time zone, email and password. A new password ends your other sessions."""
    outcome = await accounts.update_me(
        session,
        ctx,
        user_id=principal.user_id,
        data=body,
        client=client,
        current_session=current,
    )
    if isinstance(outcome, logins.Refusal):
        return refused(request, outcome)
    return UserOut.model_validate(outcome)


# --- sessions and login history ---------------------------------------------------------------


@router.get("/sessions", response_model=SessionPage)
async def list_sessions(
    session: SessionDep,
    ctx: ContextDep,
    principal: CurrentPrincipal,
    current: CurrentSessionDep,
    include_inactive: bool = False,
    limit: Limit = 50,
    cursor: str | None = None,
) -> SessionPage:
    rows = await repository.list_sessions(
        session,
        user_id=principal.user_id,
        active_after=None if include_inactive else ctx.clock.now(),
        limit=limit,
        after=pages.decode(cursor),
    )
    page, next_cursor = pages.cut(rows, limit, lambda s: (s.created_at, s.id))
    items = [
        SessionOut.model_validate(row).model_copy(update={"current": row.id == current})
        for row in page
    ]
    return SessionPage(items=items, next_cursor=next_cursor)


@router.delete("/sessions/{session_id}", status_code=204)
async def revoke_session(
    session_id: uuid.UUID, session: SessionDep, ctx: ContextDep, principal: InteractivePrincipal
) -> Response:
    """End one of your sessions: its refresh token stops working at once."""
    await logins.revoke_session(session, ctx, user_id=principal.user_id, session_id=session_id)
    return Response(status_code=204)


@router.get("/login-history", response_model=LoginHistoryPage)
async def login_history(
    session: SessionDep,
    principal: CurrentPrincipal,
    limit: Limit = 50,
    cursor: str | None = None,
) -> LoginHistoryPage:
    rows = await repository.list_login_history(
        session, user_id=principal.user_id, limit=limit, after=pages.decode(cursor)
    )
    page, next_cursor = pages.cut(rows, limit, lambda h: (h.created_at, h.id))
    return LoginHistoryPage(
        items=[LoginHistoryOut.model_validate(r) for r in page], next_cursor=next_cursor
    )


# --- two-factor authentication ----------------------------------------------------------------


@router.post("/2fa/setup", response_model=TwoFactorSetupOut)
async def two_factor_setup(
    session: SessionDep, ctx: ContextDep, principal: InteractivePrincipal
) -> TwoFactorSetupOut:
    """Start enabling 2FA: a new secret for the authenticator app. Confirm with `/2fa/enable`."""
    secret, uri = await two_factor.set_up(session, ctx, user_id=principal.user_id)
    return TwoFactorSetupOut(secret=secret, otpauth_uri=uri)


@router.post(
    "/2fa/enable",
    response_model=BackupCodesOut,
    responses={400: {"description": "Wrong code", **_PROBLEM}},
)
async def two_factor_enable(
    body: CodeRequest,
    request: Request,
    session: SessionDep,
    ctx: ContextDep,
    principal: InteractivePrincipal,
    client: ClientDep,
    current: CurrentSessionDep,
) -> BackupCodesOut | JSONResponse:
    """Turn 2FA on with a code from the app; returns 10 single-use backup codes (only now)."""
    outcome = await two_factor.enable(
        session,
        ctx,
        user_id=principal.user_id,
        code=body.code,
        client=client,
        current_session=current,
    )
    if isinstance(outcome, logins.Refusal):
        return refused(request, outcome)
    return BackupCodesOut(backup_codes=outcome)


@router.post(
    "/2fa/disable",
    status_code=204,
    responses={400: {"description": "Wrong code", **_PROBLEM}},
)
async def two_factor_disable(
    body: CodeRequest,
    request: Request,
    session: SessionDep,
    ctx: ContextDep,
    principal: InteractivePrincipal,
    client: ClientDep,
    current: CurrentSessionDep,
) -> Response:
    """Turn 2FA off with a code from the app or a backup code."""
    outcome = await two_factor.disable(
        session,
        ctx,
        user_id=principal.user_id,
        code=body.code,
        client=client,
        current_session=current,
    )
    if isinstance(outcome, logins.Refusal):
        return refused(request, outcome)
    return Response(status_code=204)


@router.post(
    "/2fa/backup-codes",
    response_model=BackupCodesOut,
    responses={400: {"description": "Wrong code", **_PROBLEM}},
)
async def two_factor_backup_codes(
    body: CodeRequest,
    request: Request,
    session: SessionDep,
    ctx: ContextDep,
    principal: InteractivePrincipal,
    client: ClientDep,
    current: CurrentSessionDep,
) -> BackupCodesOut | JSONResponse:
    """Replace all backup codes with 10 new ones (the old ones stop working)."""
    outcome = await two_factor.regenerate_backup_codes(
        session,
        ctx,
        user_id=principal.user_id,
        code=body.code,
        client=client,
        current_session=current,
    )
    if isinstance(outcome, logins.Refusal):
        return refused(request, outcome)
    return BackupCodesOut(backup_codes=outcome)


# --- API keys ---------------------------------------------------------------------------------


@router.post(
    "/api-keys",
    status_code=201,
    response_model=ApiKeyCreated,
    responses={403: {"description": "A scope your role cannot grant", **_PROBLEM}},
)
async def create_api_key(
    body: CreateApiKeyRequest, session: SessionDep, ctx: ContextDep, principal: InteractivePrincipal
) -> ApiKeyCreated:
    """The response is the only time the key is shown; only its SHA-256 is stored."""
    row, key = await api_keys.create_api_key(session, ctx, principal=principal, data=body)
    return ApiKeyCreated(**ApiKeyOut.model_validate(row).model_dump(), key=key)


@router.get("/api-keys", response_model=ApiKeyPage)
async def list_api_keys(
    session: SessionDep, principal: CurrentPrincipal, limit: Limit = 50, cursor: str | None = None
) -> ApiKeyPage:
    rows, next_cursor = await api_keys.list_api_keys(
        session, user_id=principal.user_id, limit=limit, cursor=cursor
    )
    return ApiKeyPage(items=[ApiKeyOut.model_validate(r) for r in rows], next_cursor=next_cursor)


@router.delete("/api-keys/{key_id}", status_code=204)
async def revoke_api_key(
    key_id: uuid.UUID, session: SessionDep, ctx: ContextDep, principal: InteractivePrincipal
) -> Response:
    await api_keys.revoke_api_key(session, ctx, principal=principal, key_id=key_id)
    return Response(status_code=204)


@router.get("/api-keys/{key_id}/usage", response_model=ApiKeyUsageOut)
async def api_key_usage(
    key_id: uuid.UUID,
    session: SessionDep,
    principal: CurrentPrincipal,
    limit: Limit = 50,
    cursor: str | None = None,
) -> ApiKeyUsageOut:
    """Requests made with the key, newest first (filled from the gateway's `api_key.used`)."""
    key, total, rows, next_cursor = await api_keys.api_key_usage(
        session, principal=principal, key_id=key_id, limit=limit, cursor=cursor
    )
    return ApiKeyUsageOut(
        key_id=key.id,
        total_requests=total,
        last_used_at=key.last_used_at,
        items=[ApiUsageOut.model_validate(r) for r in rows],
        next_cursor=next_cursor,
    )


# --- admin ------------------------------------------------------------------------------------


@router.get("/users", response_model=AdminUserPage)
async def list_users(
    session: SessionDep,
    _admin: AdminPrincipal,
    role: Role | None = None,
    is_active: bool | None = None,
    q: Annotated[str | None, Query(max_length=100, description="Part of username or email")] = None,
    limit: Limit = 50,
    cursor: str | None = None,
) -> AdminUserPage:
    rows, next_cursor = await accounts.list_users(
        session, role=role, is_active=is_active, q=q, limit=limit, cursor=cursor
    )
    return AdminUserPage(
        items=[AdminUserOut.model_validate(r) for r in rows], next_cursor=next_cursor
    )


@router.get("/users/{user_id}", response_model=AdminUserOut)
async def get_user(user_id: uuid.UUID, session: SessionDep, _admin: AdminPrincipal) -> AdminUserOut:
    return AdminUserOut.model_validate(await accounts.get_user(session, user_id=user_id))


@router.patch(
    "/users/{user_id}",
    response_model=AdminUserOut,
    responses={409: {"description": "Would leave no active admin", **_PROBLEM}},
)
async def update_user(
    user_id: uuid.UUID,
    body: AdminUpdateUserRequest,
    session: SessionDep,
    ctx: ContextDep,
    _admin: AdminPrincipal,
) -> AdminUserOut:
    """Change a user's role or deactivate/reactivate them. Deactivation ends their sessions;
    their access tokens and API keys stop working at the gateway's next check."""
    user = await accounts.admin_update_user(session, ctx, user_id=user_id, data=body)
    return AdminUserOut.model_validate(user)


@router.post("/users/{user_id}/unlock", response_model=AdminUserOut)
async def unlock_user(
    user_id: uuid.UUID, session: SessionDep, _admin: AdminPrincipal
) -> AdminUserOut:
    """Lift a lockout now and reset the failure count."""
    return AdminUserOut.model_validate(await accounts.unlock_user(session, user_id=user_id))
