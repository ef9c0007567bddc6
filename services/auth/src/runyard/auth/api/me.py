"""Your own account: who you are, and changes to your profile, email and password."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from runyard.auth import accounts, errors
from runyard.auth.api.deps import PROBLEM, CallerDep, InteractivePrincipal
from runyard.auth.context import ContextDep
from runyard.auth.recovery import verification
from runyard.auth.schemas import Accepted, UpdateMeRequest, UserOut
from runyard.shared.identity import CurrentPrincipal
from runyard.shared.runtime import SessionDep

router = APIRouter()


@router.get("/me", response_model=UserOut)
async def me(session: SessionDep, ctx: ContextDep, principal: CurrentPrincipal) -> UserOut:
    user = await accounts.get_user(session, user_id=principal.user_id)
    pending = await verification.pending_email(session, ctx, user.id)
    return UserOut.model_validate(user).model_copy(update={"pending_email": pending})


@router.patch(
    "/me",
    response_model=UserOut,
    responses={
        403: {
            "description": "No `current_password` (or `code`), or a wrong one "
            "(`code: reauthentication_required` when missing)",
            **PROBLEM,
        },
        423: {"description": "Locked after repeated failures", **PROBLEM},
    },
)
async def update_me(
    body: UpdateMeRequest, request: Request, session: SessionDep, ctx: ContextDep, caller: CallerDep
) -> UserOut | JSONResponse:
    """Profile, time zone, email and password. A new password ends your other sessions. A new
    email address shows as `pending_email` until the link sent to it is followed; the old
    address is told when it is."""
    outcome = await accounts.update_me(session, ctx, caller, body)
    if isinstance(outcome, errors.Refusal):
        return errors.problem(request, outcome)
    user, pending = outcome
    return UserOut.model_validate(user).model_copy(update={"pending_email": pending})


@router.post(
    "/verify-email/resend",
    status_code=202,
    response_model=Accepted,
    responses={
        409: {"description": "The address is verified already", **PROBLEM},
        429: {"description": "One was sent a moment ago; see `Retry-After`", **PROBLEM},
    },
)
async def resend_verification(
    session: SessionDep, ctx: ContextDep, principal: InteractivePrincipal
) -> Accepted:
    """A new verification link for your account's address."""
    user = await accounts.active_user_for_update(session, principal.user_id)
    await verification.resend_signup_link(session, ctx, user=user)
    return Accepted(detail=f"A verification link is on its way to {user.email}.")
