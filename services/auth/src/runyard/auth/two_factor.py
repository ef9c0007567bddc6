"""Two-factor authentication: TOTP setup, enable, disable, backup codes.

Every change here ends the user's other sessions and needs a step-up: enabling the current
password (and a code from the new app), disabling and new backup codes a code. A wrong password
or code counts as a failed login (the same lockout), so a stolen session cannot guess them.
"""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from runyard.auth import accounts, errors, events, logins, repository, sessions, stepup, totp
from runyard.auth.callers import Caller
from runyard.auth.context import AuthContext
from runyard.auth.models import BackupCode, User
from runyard.shared.contracts.auth import TwoFactorDisabled, TwoFactorEnabled
from runyard.shared.db import new_id
from runyard.shared.events import EventPayload
from runyard.shared.logging import get_logger

log = get_logger(__name__)


async def set_up(session: AsyncSession, ctx: AuthContext, *, user_id: uuid.UUID) -> tuple[str, str]:
    """A new secret (replacing any earlier unconfirmed one) and its ``otpauth://`` URI."""
    user = await accounts.active_user_for_update(session, user_id)
    if user.totp_enabled:
        raise errors.TwoFactorAlreadyEnabled()
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
    caller: Caller,
    allow_backup: bool,
) -> errors.Refusal | None:
    async def check() -> bool:
        if allow_backup:
            method = await logins.second_factor(
                session, ctx, user=user, code=code, client=caller.client
            )
            return method is not None
        return logins.accept_totp(ctx, user=user, code=code)

    return await logins.confirm(
        session, ctx, user=user, client=caller.client, check=check, refusal=errors.InvalidCode()
    )


async def _user_with_two_factor(
    session: AsyncSession, ctx: AuthContext, caller: Caller, *, code: str | None
) -> User | errors.Refusal:
    """The caller's account, which has 2FA on, once ``code`` (from the app or a backup code)
    confirms the change (step-up: the password alone is not enough here)."""
    user = await accounts.active_user_for_update(session, caller.user_id)
    if not user.totp_enabled:
        raise errors.TwoFactorNotEnabled()
    if code is None:
        raise errors.ReauthenticationRequired(password=False, code=True)
    refusal = await _check_code(
        session, ctx, user=user, code=code, caller=caller, allow_backup=True
    )
    return user if refusal is None else refusal


async def enable(
    session: AsyncSession,
    ctx: AuthContext,
    caller: Caller,
    *,
    code: str,
    current_password: str | None,
) -> list[str] | errors.Refusal:
    """Turn 2FA on: ``code`` proves the app holds the secret, ``current_password`` that the
    account's owner asks (a stolen token could otherwise lock the owner out with its own app)."""
    user = await accounts.active_user_for_update(session, caller.user_id)
    if user.totp_enabled:
        raise errors.TwoFactorAlreadyEnabled()
    if user.totp_secret is None:
        raise errors.TwoFactorNotSetUp()
    refusal = await stepup.confirm_identity(
        session, ctx, user=user, caller=caller, current_password=current_password
    )
    if refusal is not None:
        return refusal
    refusal = await _check_code(
        session, ctx, user=user, code=code, caller=caller, allow_backup=False
    )
    if refusal is not None:
        return refusal
    user.totp_enabled = True
    codes = await _replace_backup_codes(session, ctx, user)
    await _changed(session, ctx, caller, user, TwoFactorEnabled(user_id=user.id))
    log.info("auth.two_factor.enabled", user_id=str(user.id))
    return codes


async def disable(
    session: AsyncSession, ctx: AuthContext, caller: Caller, *, code: str | None
) -> errors.Refusal | None:
    user = await _user_with_two_factor(session, ctx, caller, code=code)
    if isinstance(user, errors.Refusal):
        return user
    user.totp_enabled = False
    user.totp_secret = None
    user.totp_last_used_step = None
    await repository.delete_backup_codes(session, user.id)
    await _changed(session, ctx, caller, user, TwoFactorDisabled(user_id=user.id))
    log.info("auth.two_factor.disabled", user_id=str(user.id))
    return None


async def regenerate_backup_codes(
    session: AsyncSession, ctx: AuthContext, caller: Caller, *, code: str | None
) -> list[str] | errors.Refusal:
    user = await _user_with_two_factor(session, ctx, caller, code=code)
    if isinstance(user, errors.Refusal):
        return user
    codes = await _replace_backup_codes(session, ctx, user)
    await _changed(session, ctx, caller, user, None)
    log.info("auth.backup_codes.regenerated", user_id=str(user.id))
    return codes


async def _changed(
    session: AsyncSession,
    ctx: AuthContext,
    caller: Caller,
    user: User,
    payload: EventPayload | None,
) -> None:
    """Publish the change (if it is an event) and end the user's other sessions (OWASP: 2FA
    changes revoke them)."""
    if payload is not None:
        await events.user_changed(session, user, payload)
    await sessions.end_other_sessions(
        session, ctx, user_id=user.id, keep=caller.session_id, reason="two_factor_changed"
    )
    await session.flush()
