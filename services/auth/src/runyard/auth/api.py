from __future__ import annotations

import ipaddress
from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from runyard.auth import service
from runyard.auth.config import Settings
from runyard.auth.schemas import JwkSet, LoginRequest, RegisterRequest, TokenResponse, UserOut
from runyard.auth.security import SigningKey
from runyard.shared.http import PROBLEM_JSON, problem_response
from runyard.shared.identity import CurrentPrincipal
from runyard.shared.runtime import RuntimeDep, SessionDep

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])

SIGNING_KEY = "signing_key"
USER_AGENT_MAX = 512
INVALID_CREDENTIALS = "Invalid username, email or password."


def get_signing_key(runtime: RuntimeDep) -> SigningKey:
    key: SigningKey = runtime.state[SIGNING_KEY]
    return key


SigningKeyDep = Annotated[SigningKey, Depends(get_signing_key)]


def _valid_ip(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return None


def client_info(request: Request) -> service.ClientInfo:
    """Client address from the gateway's ``X-Forwarded-For`` (first entry), else the peer."""
    forwarded = request.headers.get("x-forwarded-for")
    ip = _valid_ip(forwarded.split(",")[0]) if forwarded else None
    if ip is None and request.client is not None:
        ip = _valid_ip(request.client.host)
    user_agent = request.headers.get("user-agent")
    return service.ClientInfo(
        ip_address=ip, user_agent=user_agent[:USER_AGENT_MAX] if user_agent else None
    )


_PROBLEM: dict[str, Any] = {"content": {PROBLEM_JSON: {"schema": {"type": "object"}}}}


@router.post(
    "/register",
    status_code=201,
    response_model=UserOut,
    responses={409: {"description": "Username or email already taken", **_PROBLEM}},
)
async def register(body: RegisterRequest, session: SessionDep) -> UserOut:
    user = await service.register_user(session, data=body)
    return UserOut.model_validate(user)


@router.post(
    "/login",
    response_model=TokenResponse,
    responses={401: {"description": "Invalid credentials (one generic message)", **_PROBLEM}},
)
async def login(
    body: LoginRequest,
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    signing_key: SigningKeyDep,
) -> TokenResponse | JSONResponse:
    settings = cast(Settings, runtime.settings)
    outcome = await service.log_in(
        session,
        login=body.login,
        password=body.password,
        client=client_info(request),
        signing_key=signing_key,
        token_ttl_seconds=settings.access_token_ttl_seconds,
    )
    if isinstance(outcome, service.LoginRejected):
        return problem_response(
            request, status=401, title="Unauthorized", detail=INVALID_CREDENTIALS
        )
    return TokenResponse(access_token=outcome.token.token, expires_in=outcome.token.expires_in)


@router.get("/me", response_model=UserOut)
async def me(session: SessionDep, principal: CurrentPrincipal) -> UserOut:
    user = await service.get_user(session, user_id=principal.user_id)
    return UserOut.model_validate(user)


@router.get("/.well-known/jwks.json", response_model=JwkSet)
async def jwks(response: Response, signing_key: SigningKeyDep) -> dict[str, Any]:
    response.headers["Cache-Control"] = "public, max-age=300"
    return {"keys": [signing_key.public_jwk()]}
