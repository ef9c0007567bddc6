"""Your own account: who you are, and changes to your profile, email and password."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from runyard.auth import accounts, errors
from runyard.auth.api.deps import PROBLEM, CallerDep
from runyard.auth.context import ContextDep
from runyard.auth.schemas import UpdateMeRequest, UserOut
from runyard.shared.identity import CurrentPrincipal
from runyard.shared.runtime import SessionDep

router = APIRouter()


@router.get("/me", response_model=UserOut)
async def me(session: SessionDep, principal: CurrentPrincipal) -> UserOut:
    user = await accounts.get_user(session, user_id=principal.user_id)
    return UserOut.model_validate(user)


@router.patch(
    "/me",
    response_model=UserOut,
    responses={
        403: {"description": "`current_password` is wrong", **PROBLEM},
        409: {"description": "Email already taken", **PROBLEM},
        423: {"description": "Locked after repeated failures", **PROBLEM},
    },
)
async def update_me(
    body: UpdateMeRequest, request: Request, session: SessionDep, ctx: ContextDep, caller: CallerDep
) -> UserOut | JSONResponse:
    """Profile, time zone, email and password. A new password ends your other sessions."""
    outcome = await accounts.update_me(session, ctx, caller, body)
    if isinstance(outcome, errors.Refusal):
        return errors.problem(request, outcome)
    return UserOut.model_validate(outcome)
