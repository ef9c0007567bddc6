"""Your API keys: create (shown once), list, revoke, and what each was used for."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from runyard.auth import api_keys, errors
from runyard.auth.api.deps import PROBLEM, CallerDep, InteractivePrincipal
from runyard.auth.context import ContextDep
from runyard.auth.schemas import (
    ApiKeyCreated,
    ApiKeyOut,
    ApiKeyPage,
    ApiKeyUsageOut,
    ApiUsageOut,
    CreateApiKeyRequest,
)
from runyard.shared.identity import CurrentPrincipal
from runyard.shared.pagination import DEFAULT_LIMIT, CursorParam, Limit
from runyard.shared.runtime import SessionDep

router = APIRouter()


@router.post(
    "/api-keys",
    status_code=201,
    response_model=ApiKeyCreated,
    responses={
        403: {
            "description": "A scope your role cannot grant; or no `current_password` (or, 2FA "
            "on, `code`): `code: reauthentication_required`, or a wrong one",
            **PROBLEM,
        },
        423: {"description": "Locked after repeated failures", **PROBLEM},
    },
)
async def create_api_key(
    body: CreateApiKeyRequest,
    request: Request,
    session: SessionDep,
    ctx: ContextDep,
    caller: CallerDep,
) -> ApiKeyCreated | JSONResponse:
    """Needs your current password (or, with 2FA on, a code): a key outlives any access token.
    The response is the only time the key is shown; only its SHA-256 is stored."""
    outcome = await api_keys.create_api_key(session, ctx, caller=caller, data=body)
    if isinstance(outcome, errors.Refusal):
        return errors.problem(request, outcome)
    row, key = outcome
    return ApiKeyCreated(**ApiKeyOut.model_validate(row).model_dump(), key=key)


@router.get("/api-keys", response_model=ApiKeyPage)
async def list_api_keys(
    session: SessionDep,
    principal: CurrentPrincipal,
    limit: Limit = DEFAULT_LIMIT,
    cursor: CursorParam = None,
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
    limit: Limit = DEFAULT_LIMIT,
    cursor: CursorParam = None,
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
