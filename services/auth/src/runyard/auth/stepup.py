"""Step-up authentication: changes a stolen access token alone must not make.

Enabling and disabling two-factor authentication, new backup codes, a new API key, a new email
address and a new password need proof that the account's owner is at the keyboard, not only a
valid access token: the current password, or (with two-factor authentication on, where the
change allows it) a current code from the authenticator app or an unused backup code. A wrong
password or code counts as a failed login (the same lockout), so a stolen token cannot be used to
guess either.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from runyard.auth import errors, logins
from runyard.auth.callers import Caller
from runyard.auth.context import AuthContext
from runyard.auth.models import User


async def confirm_identity(
    session: AsyncSession,
    ctx: AuthContext,
    *,
    user: User,
    caller: Caller,
    current_password: str | None,
    code: str | None = None,
    accept_password: bool = True,
    accept_code: bool = True,
) -> errors.Refusal | None:
    """None once the proof checks out; a refusal to return (the failure counts and commits);
    raises ``ReauthenticationRequired`` when no acceptable proof was sent. ``user`` is the
    caller's own row, locked."""
    codes_work = accept_code and user.totp_enabled
    if accept_password and current_password is not None:

        async def password_matches() -> bool:
            return await ctx.passwords.verify(user.password_hash, current_password)

        return await logins.confirm(
            session,
            ctx,
            user=user,
            client=caller.client,
            check=password_matches,
            refusal=errors.WrongCurrentPassword(),
        )
    if codes_work and code is not None:

        async def code_matches() -> bool:
            method = await logins.second_factor(
                session, ctx, user=user, code=code, client=caller.client
            )
            return method is not None

        return await logins.confirm(
            session,
            ctx,
            user=user,
            client=caller.client,
            check=code_matches,
            refusal=errors.WrongCode(),
        )
    raise errors.ReauthenticationRequired(password=accept_password, code=codes_work)
