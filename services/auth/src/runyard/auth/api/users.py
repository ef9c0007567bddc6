"""What admins do to users: list, look at, change role or state, unlock."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from runyard.auth import accounts
from runyard.auth.api.deps import PROBLEM, AdminPrincipal
from runyard.auth.context import ContextDep
from runyard.auth.repository import UserFilter
from runyard.auth.schemas import AdminUpdateUserRequest, AdminUserOut, AdminUserPage, Role
from runyard.shared.pagination import DEFAULT_LIMIT, CursorParam, Limit
from runyard.shared.runtime import SessionDep

router = APIRouter()


@router.get("/users", response_model=AdminUserPage)
async def list_users(
    session: SessionDep,
    _admin: AdminPrincipal,
    role: Role | None = None,
    is_active: bool | None = None,
    q: Annotated[str | None, Query(max_length=100, description="Part of username or email")] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: CursorParam = None,
) -> AdminUserPage:
    rows, next_cursor = await accounts.list_users(
        session,
        where=UserFilter(role=role, is_active=is_active, q=q),
        limit=limit,
        cursor=cursor,
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
    responses={409: {"description": "Would leave no active admin", **PROBLEM}},
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
