"""Registration, login, tokens: the routes that need no identity (and logout)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from runyard.auth import accounts, errors, logins, sessions
from runyard.auth.api.deps import PROBLEM, ClientDep, CurrentSessionDep
from runyard.auth.context import ContextDep
from runyard.auth.schemas import (
    JwkSet,
    LoginRequest,
    LogoutRequest,
    RefreshRequest,
    RegisterRequest,
    TokenResponse,
    UserOut,
)
from runyard.shared.identity import CurrentPrincipal
from runyard.shared.runtime import SessionDep

router = APIRouter()


def tokens_out(
    request: Request, outcome: sessions.IssuedTokens | errors.Refusal
) -> TokenResponse | JSONResponse:
    if isinstance(outcome, errors.Refusal):
        return errors.problem(request, outcome)
    return TokenResponse(
        access_token=outcome.access_token,
        refresh_token=outcome.refresh_token,
        expires_in=outcome.expires_in,
        refresh_expires_in=outcome.refresh_expires_in,
    )


@router.post(
    "/register",
    status_code=201,
    response_model=UserOut,
    responses={
        409: {"description": "Username already taken", **PROBLEM},
        422: {"description": "Invalid input, or a password the policy refuses", **PROBLEM},
    },
)
async def register(
    body: RegisterRequest, session: SessionDep, ctx: ContextDep, client: ClientDep
) -> UserOut:
    """A new account; a verification link goes to its address. Whether the address already
    belongs to an account is not revealed: the answer is the same, and that account's owner
    gets an email saying someone tried."""
    user = await accounts.create_user(
        session,
        ctx,
        username=body.username,
        email=body.email,
        password=body.password,
        client=client,
    )
    return UserOut.model_validate(user)


@router.post(
    "/login",
    response_model=TokenResponse,
    responses={
        401: {
            "description": "Invalid credentials (one generic message for every cause), or "
            "`code: two_factor_required` when the password is right and a code is needed",
            **PROBLEM,
        },
        423: {"description": "Locked after repeated failures; see `Retry-After`", **PROBLEM},
        429: {"description": "Too many failures from this address; see `Retry-After`", **PROBLEM},
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
    return tokens_out(request, outcome)


@router.post(
    "/refresh",
    response_model=TokenResponse,
    responses={401: {"description": "Unknown, expired, revoked or reused token", **PROBLEM}},
)
async def refresh(
    body: RefreshRequest, request: Request, session: SessionDep, ctx: ContextDep, client: ClientDep
) -> TokenResponse | JSONResponse:
    """A new access token and a new refresh token; the one sent is used up. Sending a used-up
    refresh token again ends its session (it was copied)."""
    outcome = await sessions.refresh(session, ctx, refresh_token=body.refresh_token, client=client)
    return tokens_out(request, outcome)


@router.post("/logout", status_code=204)
async def logout(
    session: SessionDep,
    ctx: ContextDep,
    principal: CurrentPrincipal,
    current: CurrentSessionDep,
    body: LogoutRequest | None = None,
) -> Response:
    """End a session: the one of `refresh_token`, else the session of this request."""
    await sessions.log_out(
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
