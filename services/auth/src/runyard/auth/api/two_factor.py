"""Two-factor authentication of your own account: set up, enable, disable, backup codes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from runyard.auth import errors, two_factor
from runyard.auth.api.deps import PROBLEM, CallerDep, InteractivePrincipal
from runyard.auth.context import ContextDep
from runyard.auth.schemas import (
    BackupCodesOut,
    CodeRequest,
    EnableTwoFactorRequest,
    TwoFactorSetupOut,
)
from runyard.shared.runtime import SessionDep

router = APIRouter()

WRONG_CODE: dict[int | str, dict[str, Any]] = {
    400: {"description": "Wrong code", **PROBLEM},
    403: {
        "description": "No `code` sent (`code: reauthentication_required`): a stolen access "
        "token alone cannot change 2FA",
        **PROBLEM,
    },
}
ENABLE_REFUSALS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Wrong code", **PROBLEM},
    403: {
        "description": "No `current_password` (`code: reauthentication_required`), or a wrong one",
        **PROBLEM,
    },
}


def backup_codes_out(
    request: Request, outcome: list[str] | errors.Refusal
) -> BackupCodesOut | JSONResponse:
    if isinstance(outcome, errors.Refusal):
        return errors.problem(request, outcome)
    return BackupCodesOut(backup_codes=outcome)


@router.post("/2fa/setup", response_model=TwoFactorSetupOut)
async def two_factor_setup(
    session: SessionDep, ctx: ContextDep, principal: InteractivePrincipal
) -> TwoFactorSetupOut:
    """Start enabling 2FA: a new secret for the authenticator app. Confirm with `/2fa/enable`."""
    secret, uri = await two_factor.set_up(session, ctx, user_id=principal.user_id)
    return TwoFactorSetupOut(secret=secret, otpauth_uri=uri)


@router.post("/2fa/enable", response_model=BackupCodesOut, responses=ENABLE_REFUSALS)
async def two_factor_enable(
    body: EnableTwoFactorRequest,
    request: Request,
    session: SessionDep,
    ctx: ContextDep,
    caller: CallerDep,
) -> BackupCodesOut | JSONResponse:
    """Turn 2FA on with a code from the app and your current password; returns 10 single-use
    backup codes (only now)."""
    outcome = await two_factor.enable(
        session, ctx, caller, code=body.code, current_password=body.current_password
    )
    return backup_codes_out(request, outcome)


@router.post("/2fa/disable", status_code=204, responses=WRONG_CODE)
async def two_factor_disable(
    body: CodeRequest, request: Request, session: SessionDep, ctx: ContextDep, caller: CallerDep
) -> Response:
    """Turn 2FA off with a code from the app or a backup code."""
    refusal = await two_factor.disable(session, ctx, caller, code=body.code)
    if refusal is not None:
        return errors.problem(request, refusal)
    return Response(status_code=204)


@router.post("/2fa/backup-codes", response_model=BackupCodesOut, responses=WRONG_CODE)
async def two_factor_backup_codes(
    body: CodeRequest, request: Request, session: SessionDep, ctx: ContextDep, caller: CallerDep
) -> BackupCodesOut | JSONResponse:
    """Replace all backup codes with 10 new ones (the old ones stop working)."""
    outcome = await two_factor.regenerate_backup_codes(session, ctx, caller, code=body.code)
    return backup_codes_out(request, outcome)
