"""Your login sessions and your login history."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response

from runyard.auth import logins, sessions, signout
from runyard.auth.api.deps import CallerDep, CurrentSessionDep, InteractivePrincipal
from runyard.auth.context import ContextDep
from runyard.auth.schemas import (
    LoginHistoryOut,
    LoginHistoryPage,
    RevokeAllRequest,
    RevokedOut,
    SessionOut,
    SessionPage,
)
from runyard.shared.identity import CurrentPrincipal
from runyard.shared.pagination import DEFAULT_LIMIT, CursorParam, Limit
from runyard.shared.runtime import SessionDep

router = APIRouter()


@router.get("/sessions", response_model=SessionPage)
async def list_sessions(
    session: SessionDep,
    ctx: ContextDep,
    principal: CurrentPrincipal,
    current: CurrentSessionDep,
    include_inactive: bool = False,
    limit: Limit = DEFAULT_LIMIT,
    cursor: CursorParam = None,
) -> SessionPage:
    rows, next_cursor = await sessions.list_sessions(
        session,
        ctx,
        user_id=principal.user_id,
        include_inactive=include_inactive,
        limit=limit,
        cursor=cursor,
    )
    items = [
        SessionOut.model_validate(row).model_copy(update={"current": row.id == current})
        for row in rows
    ]
    return SessionPage(items=items, next_cursor=next_cursor)


@router.delete("/sessions/{session_id}", status_code=204)
async def revoke_session(
    session_id: uuid.UUID, session: SessionDep, ctx: ContextDep, principal: InteractivePrincipal
) -> Response:
    """End one of your sessions: its refresh token stops working at once."""
    await sessions.revoke_session(session, ctx, user_id=principal.user_id, session_id=session_id)
    return Response(status_code=204)


@router.post("/sessions/revoke-all", response_model=RevokedOut)
async def revoke_all_sessions(
    session: SessionDep, ctx: ContextDep, caller: CallerDep, body: RevokeAllRequest | None = None
) -> RevokedOut:
    """Log out everywhere: end every other session (`include_current`: this one too), and with
    `revoke_api_keys` revoke every API key. Their refresh tokens stop at once, their access
    tokens and keys at the gateway's next check."""
    body = body or RevokeAllRequest()
    ended, revoked = await signout.log_out_everywhere(
        session,
        ctx,
        caller,
        include_current=body.include_current,
        revoke_api_keys=body.revoke_api_keys,
    )
    return RevokedOut(sessions_revoked=ended, api_keys_revoked=revoked)


@router.get("/login-history", response_model=LoginHistoryPage)
async def login_history(
    session: SessionDep,
    principal: CurrentPrincipal,
    limit: Limit = DEFAULT_LIMIT,
    cursor: CursorParam = None,
) -> LoginHistoryPage:
    rows, next_cursor = await logins.login_history(
        session, user_id=principal.user_id, limit=limit, cursor=cursor
    )
    return LoginHistoryPage(
        items=[LoginHistoryOut.model_validate(r) for r in rows], next_cursor=next_cursor
    )
