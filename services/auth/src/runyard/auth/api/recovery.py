"""Routes that need no login: forgotten passwords and the links from verification emails."""

from __future__ import annotations

from fastapi import APIRouter, Response

from runyard.auth.api.deps import PROBLEM, ClientDep
from runyard.auth.context import ContextDep
from runyard.auth.recovery import reset, verification
from runyard.auth.schemas import (
    Accepted,
    PasswordResetConfirm,
    PasswordResetRequest,
    VerifyEmailRequest,
)
from runyard.shared.runtime import SessionDep

router = APIRouter()

RESET_ACCEPTED = (
    "If an account uses this address, a link to choose a new password is on its way to it. "
    "The link works once, for a limited time."
)


@router.post(
    "/password-reset",
    status_code=202,
    response_model=Accepted,
    responses={
        429: {
            "description": "Too many requests for this address or from this client; see "
            "`Retry-After`",
            **PROBLEM,
        }
    },
)
async def request_password_reset(
    body: PasswordResetRequest, session: SessionDep, ctx: ContextDep, client: ClientDep
) -> Accepted:
    """Email a single-use link to choose a new password. The answer is the same whether or not
    an account has the address."""
    await reset.request_reset(session, ctx, email=body.email, client=client)
    return Accepted(detail=RESET_ACCEPTED)


@router.post(
    "/password-reset/confirm",
    status_code=204,
    responses={
        400: {"description": "Unknown, used or expired link", **PROBLEM},
        422: {"description": "A password the policy refuses (the link still works)", **PROBLEM},
    },
)
async def confirm_password_reset(
    body: PasswordResetConfirm, session: SessionDep, ctx: ContextDep, client: ClientDep
) -> Response:
    """Set a new password with the token from the email. Every session ends and every API key
    is revoked; two-factor authentication stays on."""
    await reset.reset_password(
        session, ctx, token=body.token, password=body.password, client=client
    )
    return Response(status_code=204)


@router.post(
    "/verify-email",
    status_code=204,
    responses={
        400: {"description": "Unknown, used or expired link", **PROBLEM},
        409: {"description": "The new address belongs to another account by now", **PROBLEM},
    },
)
async def verify_email(body: VerifyEmailRequest, session: SessionDep, ctx: ContextDep) -> Response:
    """Follow a verification link with the token from the email. For a new address the
    account's email changes now, and the old address is told."""
    await verification.verify_email(session, ctx, token=body.token)
    return Response(status_code=204)
