"""Endpoints for the gateway only (``/internal/v1``), never routed to clients.

The gateway proxies ``/api/v1/...`` and MLflow's ``/api/2.0/mlflow*`` paths, never
``/internal/``, so these paths are unreachable through it. Callers prove they are the gateway
like forwarded identities do (ADR 0005):
``X-Runyard-Internal-Signature`` (``runyard.shared.identity.internal_call_headers``), an
HMAC-SHA256 with the shared ``IDENTITY_SECRET`` over the timestamp, the method and the path.
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from runyard.auth import api_keys, errors, logins, sessions
from runyard.auth.api.deps import ClientDep
from runyard.auth.context import AuthRuntimeDep, ContextDep
from runyard.auth.schemas import (
    ApiKeyIdentity,
    BasicAccess,
    BasicCredentials,
    SessionStatus,
    VerifyApiKeyRequest,
)
from runyard.shared.identity import INTERNAL_SIGNATURE_HEADER, verify_internal_call
from runyard.shared.runtime import SessionDep


async def require_gateway(request: Request, runtime: AuthRuntimeDep) -> None:
    verify_internal_call(
        runtime.settings.identity_secret.get_secret_value(),
        method=request.method,
        path=request.url.path,
        header=request.headers.get(INTERNAL_SIGNATURE_HEADER, ""),
    )


router = APIRouter(
    prefix="/internal/v1",
    tags=["internal"],
    include_in_schema=False,
    dependencies=[Depends(require_gateway)],
)


@router.post("/api-keys/verify", response_model=ApiKeyIdentity)
async def verify_api_key(
    body: VerifyApiKeyRequest, request: Request, session: SessionDep, ctx: ContextDep
) -> ApiKeyIdentity | JSONResponse:
    """200 with who the key acts for, or 401 (malformed, unknown, revoked, expired, or the
    owner is deactivated; one answer for all)."""
    found = await api_keys.verify_api_key(session, ctx, key=body.key)
    if found is None:
        return errors.problem(request, errors.InvalidApiKey())
    key, user, scopes = found
    return ApiKeyIdentity(
        key_id=key.id,
        user_id=user.id,
        username=user.username,
        role=user.role,
        scopes=scopes,
        rate_limit=key.rate_limit,
        expires_at=key.expires_at,
    )


@router.get("/sessions/{session_id}", response_model=SessionStatus)
async def session_status(
    session_id: uuid.UUID, session: SessionDep, ctx: ContextDep
) -> SessionStatus:
    """Is the session behind an access token (its ``sid``) still good? 404: never existed."""
    row, user = await sessions.session_status(session, session_id=session_id)
    return SessionStatus(
        session_id=row.id,
        user_id=user.id,
        active=sessions.session_is_live(row, ctx.clock.now()),
        user_active=user.is_active,
        role=user.role,
        username=user.username,
    )


@router.post("/basic-auth", response_model=BasicAccess)
async def check_basic_credentials(
    body: BasicCredentials,
    request: Request,
    session: SessionDep,
    ctx: ContextDep,
    client: ClientDep,
) -> BasicAccess | JSONResponse:
    """HTTP Basic credentials from an MLflow client (ADR 0021): checked like
    ``POST /api/v1/auth/login`` (same steps, lockout, limits and history; the client address is
    the one the gateway signed), answered with an access token on the user's one ``basic_auth``
    session. Refusals are login's: 401 (``code: invalid_credentials``, or
    ``two_factor_required``), 423 and 429 with ``Retry-After``. A 401 without a ``code`` is a
    refused signature, not a verdict on the credentials."""
    outcome = await logins.check_basic_credentials(
        session, ctx, login=body.login, password=body.password, client=client
    )
    if isinstance(outcome, errors.InvalidCredentials):
        outcome.extra["code"] = "invalid_credentials"
    if isinstance(outcome, errors.Refusal):
        return errors.problem(request, outcome)
    return BasicAccess(
        access_token=outcome.access_token,
        expires_in=outcome.expires_in,
        session_id=outcome.session_id,
    )
