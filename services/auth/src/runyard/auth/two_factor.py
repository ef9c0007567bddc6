"""Two-factor authentication: TOTP setup, enable, disable, backup codes.

Every change here ends the user's other sessions. A wrong code counts as a failed login (the
same lockout), so a stolen session cannot guess codes.
"""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from runyard.auth import accounts, events, logins, repository, totp
from runyard.auth.context import AuthContext
from runyard.auth.models import BackupCode, User
from runyard.shared.contracts.auth import TwoFactorDisabled, TwoFactorEnabled
from runyard.shared.db import new_id
from runyard.shared.http import ProblemError
from runyard.shared.logging import get_logger

log = get_logger(__name__)

INVALID_CODE = "The code is not valid."


async def set_up(session: AsyncSession, ctx: AuthContext, *, user_id: uuid.UUID) -> tuple[str, str]:
    """A new secret (replacing any earlier unconfirmed one) and its ``otpauth://`` URI."""
    user = await accounts.active_user_for_update(session, user_id)
    if user.totp_enabled:
        raise ProblemError(409, "Conflict", "Two-factor authentication is already enabled.")
    secret = totp.new_secret()
    user.totp_secret = ctx.secret_box.seal(secret)
    user.totp_last_used_step = None
    await session.flush()
    uri = totp.provisioning_uri(secret, account=user.email, issuer=ctx.settings.totp_issuer)
    return secret, uri


async def _replace_backup_codes(session: AsyncSession, ctx: AuthContext, user: User) -> list[str]:
    codes = totp.new_backup_codes()
    hashes = await asyncio.gather(
        *(ctx.passwords.hash(totp.normalize_backup_code(code) or code) for code in codes)
    )
    await repository.delete_backup_codes(session, user.id)
    session.add_all(
        BackupCode(id=new_id(), user_id=user.id, code_hash=code_hash, is_used=False)
        for code_hash in hashes
    )
    return codes


async def _check_code(
    session: AsyncSession,
    ctx: AuthContext,
    *,
    user: User,
    code: str,
    client: logins.ClientInfo,
    allow_backup: bool,
) -> logins.Refusal | None:
    now = ctx.clock.now()
    refusal = logins.refuse_if_locked(user, now)
    if refusal is not None:
        return refusal
    accepted = False
    if user.totp_secret is not None:
        if allow_backup:
            accepted = (
                await logins.second_factor(session, ctx, user=user, code=code, client=client)
                is not None
            )
        else:
            step = totp.matching_step(
                ctx.secret_box.open(user.totp_secret),
                code,
                now=now,
                last_used_step=user.totp_last_used_step,
            )
            if step is not None:
                user.totp_last_used_step = step
                accepted = True
    if not accepted:
        await logins.record_user_failure(session, ctx, user=user, client=client, now=now)
        await session.flush()
        return logins.Refusal(400, "Bad Request", INVALID_CODE)
    logins.clear_failures(user)
    return None


async def enable(
    session: AsyncSession,
    ctx: AuthContext,
    *,
    user_id: uuid.UUID,
    code: str,
    client: logins.ClientInfo,
    current_session: uuid.UUID | None,
) -> list[str] | logins.Refusal:
    user = await accounts.active_user_for_update(session, user_id)
    if user.totp_enabled:
        raise ProblemError(409, "Conflict", "Two-factor authentication is already enabled.")
    if user.totp_secret is None:
        raise ProblemError(409, "Conflict", "Call POST /api/v1/auth/2fa/setup first.")
    refusal = await _check_code(
        session, ctx, user=user, code=code, client=client, allow_backup=False
    )
    if refusal is not None:
        return refusal
    user.totp_enabled = True
    codes = await _replace_backup_codes(session, ctx, user)
    await _two_factor_changed(
        session, ctx, user, TwoFactorEnabled(user_id=user.id), current_session
    )
    log.info("auth.two_factor.enabled", user_id=str(user.id))
    return codes


async def disable(
    session: AsyncSession,
    ctx: AuthContext,
    *,
    user_id: uuid.UUID,
    code: str,
    client: logins.ClientInfo,
    current_session: uuid.UUID | None,
) -> logins.Refusal | None:
    user = await accounts.active_user_for_update(session, user_id)
    if not user.totp_enabled:
        raise ProblemError(409, "Conflict", "Two-factor authentication is not enabled.")
    refusal = await _check_code(
        session, ctx, user=user, code=code, client=client, allow_backup=True
    )
    if refusal is not None:
        return refusal
    user.totp_enabled = False
    user.totp_secret = None
    user.totp_last_used_step = None
    await repository.delete_backup_codes(session, user.id)
    await _two_factor_changed(
        session, ctx, user, TwoFactorDisabled(user_id=user.id), current_session
    )
    log.info("auth.two_factor.disabled", user_id=str(user.id))
    return None


async def regenerate_backup_codes(
    session: AsyncSession,
    ctx: AuthContext,
    *,
    user_id: uuid.UUID,
    code: str,
    client: logins.ClientInfo,
    current_session: uuid.UUID | None,
) -> list[str] | logins.Refusal:
    user = await accounts.active_user_for_update(session, user_id)
    if not user.totp_enabled:
        raise ProblemError(409, "Conflict", "Two-factor authentication is not enabled.")
    refusal = await _check_code(
        session, ctx, user=user, code=code, client=client, allow_backup=True
    )
    if refusal is not None:
        return refusal
    codes = await _replace_backup_codes(session, ctx, user)
    await logins.end_other_sessions(
        session,
        user_id=user.id,
        keep=current_session,
        reason="two_factor_changed",
        now=ctx.clock.now(),
    )
    await session.flush()
    log.info("auth.backup_codes.regenerated", user_id=str(user.id))
    return codes


async def _two_factor_changed(
    session: AsyncSession,
    ctx: AuthContext,
    user: User,
    payload: TwoFactorEnabled | TwoFactorDisabled,
    current_session: uuid.UUID | None,
) -> None:
    """Publish the change and end the user's other sessions (OWASP: 2FA changes revoke them)."""
    await events.publish(session, payload, subject=user.id, sequence=events.bump_version(user))
    await logins.end_other_sessions(
        session,
        user_id=user.id,
        keep=current_session,
        reason="two_factor_changed",
        now=ctx.clock.now(),
    )
    await session.flush()
