"""Accounts: registration, your own profile and password, and what admins do to users."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from runyard.auth import errors, events, logins, repository, sessions, stepup
from runyard.auth.callers import Caller, ClientInfo
from runyard.auth.context import AuthContext
from runyard.auth.models import User
from runyard.auth.passwords import password_problems
from runyard.auth.recovery import repository as recovery_repository
from runyard.auth.recovery import verification
from runyard.auth.repository import UserFilter
from runyard.auth.schemas import AdminUpdateUserRequest, UpdateMeRequest
from runyard.shared.contracts.auth import PasswordChanged, RegistrationAttempted
from runyard.shared.db import new_id, utcnow
from runyard.shared.logging import get_logger
from runyard.shared.outbox import emit
from runyard.shared.pagination import cut, decode_cursor

log = get_logger(__name__)

USERS_PAGE_KIND = "users"


def check_password_policy(password: str, *, username: str, email: str, field: str) -> None:
    problems = password_problems(password, username=username, email=email)
    if problems:
        raise errors.PasswordRefused(field, problems)


async def create_user(
    session: AsyncSession,
    ctx: AuthContext,
    *,
    username: str,
    email: str,
    password: str,
    role: str = "user",
    client: ClientInfo | None = None,
    reveal_taken_email: bool = False,
) -> User:
    """A new account, and a verification link to its address.

    An address another account holds is not revealed (unless ``reveal_taken_email``, for the
    operator's CLI): the answer is a user that looks new but is stored nowhere, and the
    account that holds the address is told (``registration.attempted``). A taken username is
    refused with 409: usernames are public.
    """
    check_password_policy(password, username=username, email=email, field="password")
    password_hash = await ctx.passwords.hash(password)
    user = await repository.insert_user_unless_taken(
        session,
        id=new_id(),
        username=username,
        email=email,
        password_hash=password_hash,
        role=role,
        is_active=True,
        timezone="UTC",
        failed_login_attempts=0,
        totp_enabled=False,
        version=1,
    )
    if user is None:
        taken = await repository.taken_fields(session, username=username, email=email)
        if reveal_taken_email:
            raise errors.UsernameOrEmailTaken(taken)
        if "username" in taken or not taken:
            raise errors.UsernameTaken()
        return await _registration_attempted(session, username=username, email=email, client=client)
    await events.user_registered(session, user)
    await verification.send_signup_link(session, ctx, user)
    log.info("auth.user.registered", user_id=str(user.id), role=role)
    return user


async def _registration_attempted(
    session: AsyncSession,
    *,
    username: str,
    email: str,
    client: ClientInfo | None,
) -> User:
    """Tell the holder of ``email`` that someone tried to register with it; answer with a user
    that is never stored, shaped like a new one."""
    owner = await recovery_repository.user_by_email(session, email)
    if owner is not None:
        await emit(
            session,
            RegistrationAttempted(
                user_id=owner.id,
                username=owner.username,
                ip_address=client.ip_address if client else None,
            ),
            subject=owner.id,
        )
        await session.flush()
        log.info("auth.register.email_taken", user_id=str(owner.id))
    now = utcnow()  # as the column default stamps a real one
    return User(
        id=new_id(),
        username=username,
        email=email,
        full_name=None,
        role="user",
        is_active=True,
        timezone="UTC",
        totp_enabled=False,
        email_verified_at=None,
        last_login_at=None,
        created_at=now,
        updated_at=now,
    )


async def get_user(session: AsyncSession, *, user_id: uuid.UUID) -> User:
    user = await repository.get_user(session, user_id)
    if user is None:
        raise errors.NoSuchUser()
    return user


async def user_for_update(session: AsyncSession, user_id: uuid.UUID) -> User:
    user = await repository.get_user_for_update(session, user_id)
    if user is None:
        raise errors.NoSuchUser()
    return user


async def active_user_for_update(session: AsyncSession, user_id: uuid.UUID) -> User:
    """The caller's own row, locked; deactivated accounts may not change anything."""
    user = await user_for_update(session, user_id)
    if not user.is_active:
        raise errors.AccountDeactivated()
    return user


async def update_me(
    session: AsyncSession, ctx: AuthContext, caller: Caller, data: UpdateMeRequest
) -> tuple[User, str | None] | errors.Refusal:
    """The changed account and its pending new address, if any. A new password needs the
    current one; a new address the current password or (2FA on) a code, and takes effect only
    when the link sent to it is followed."""
    user = await active_user_for_update(session, caller.user_id)
    new_email = data.email if data.email is not None and data.email != user.email else None
    if data.new_password is not None:
        check_password_policy(
            data.new_password, username=user.username, email=user.email, field="new_password"
        )
    if new_email is not None or data.new_password is not None:
        refusal = await stepup.confirm_identity(
            session,
            ctx,
            user=user,
            caller=caller,
            current_password=data.current_password,
            code=data.code,
            accept_code=data.new_password is None,
        )
        if refusal is not None:
            return refusal

    changed = False
    for name in ("full_name", "timezone"):
        value = getattr(data, name)
        if name in data.model_fields_set and value != getattr(user, name):
            if name == "timezone" and value is None:
                continue
            setattr(user, name, value)
            changed = True
    if new_email is not None:
        await verification.request_email_change(session, ctx, user=user, email=new_email)
    if data.new_password is not None:
        user.password_hash = await ctx.passwords.hash(data.new_password)
        await sessions.end_other_sessions(
            session, ctx, user_id=user.id, keep=caller.session_id, reason="password_changed"
        )
        await emit(
            session,
            PasswordChanged(
                user_id=user.id,
                username=user.username,
                reason="changed",
                ip_address=caller.client.ip_address,
            ),
            subject=user.id,
        )
        log.info("auth.password.changed", user_id=str(user.id))
    if changed:
        await events.user_updated(session, user)
    await session.flush()
    return user, await verification.pending_email(session, ctx, user.id)


# --- admin ------------------------------------------------------------------------------------


async def list_users(
    session: AsyncSession, *, where: UserFilter, limit: int, cursor: str | None
) -> tuple[Sequence[User], str | None]:
    rows = await repository.list_users(
        session,
        where=where,
        limit=limit,
        after=decode_cursor(cursor, USERS_PAGE_KIND, datetime, uuid.UUID),
    )
    return cut(rows, limit, USERS_PAGE_KIND, lambda user: (user.created_at, user.id))


async def admin_update_user(
    session: AsyncSession,
    ctx: AuthContext,
    *,
    user_id: uuid.UUID,
    data: AdminUpdateUserRequest,
) -> User:
    user = await user_for_update(session, user_id)
    role = data.role if data.role is not None else user.role
    is_active = data.is_active if data.is_active is not None else user.is_active
    if role == user.role and is_active == user.is_active:
        return user
    if user.role == "admin" and user.is_active and (role != "admin" or not is_active):
        admins = await repository.lock_active_admins(session)
        if not set(admins) - {user.id}:
            raise errors.LastActiveAdmin()
    deactivated = user.is_active and not is_active
    role_changed = role != user.role
    user.role = role
    user.is_active = is_active
    if deactivated:
        await sessions.end_other_sessions(
            session, ctx, user_id=user.id, keep=None, reason="user_deactivated"
        )
        await events.user_deactivated(session, user)
        # The full state last, with the highest sequence: a consumer that gets the two events
        # in either order ends with the right copy.
        if role_changed:
            await events.user_updated(session, user)
        log.info("auth.user.deactivated", user_id=str(user.id))
    else:
        await events.user_updated(session, user)
        log.info("auth.user.changed", user_id=str(user.id), role=role, is_active=is_active)
    await session.flush()
    return user


async def unlock_user(session: AsyncSession, *, user_id: uuid.UUID) -> User:
    user = await user_for_update(session, user_id)
    logins.clear_failures(user)
    await session.flush()
    log.info("auth.user.unlocked", user_id=str(user.id))
    return user
