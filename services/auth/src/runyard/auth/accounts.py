"""Accounts: registration, your own profile and password, and what admins do to users."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from runyard.auth import errors, events, logins, repository, sessions
from runyard.auth.callers import Caller
from runyard.auth.context import AuthContext
from runyard.auth.models import User
from runyard.auth.passwords import password_problems
from runyard.auth.repository import UserFilter
from runyard.auth.schemas import AdminUpdateUserRequest, UpdateMeRequest
from runyard.shared.db import new_id
from runyard.shared.logging import get_logger
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
) -> User:
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
        raise errors.UsernameOrEmailTaken(
            await repository.taken_fields(session, username=username, email=email)
        )
    await events.user_registered(session, user)
    log.info("auth.user.registered", user_id=str(user.id), role=role)
    return user


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


async def reauthenticate(
    session: AsyncSession, ctx: AuthContext, *, user: User, password: str | None, caller: Caller
) -> errors.Refusal | None:
    """Check the current password for a sensitive change. Wrong ones count like failed logins."""
    if password is None:
        raise errors.CurrentPasswordRequired()

    async def check() -> bool:
        return await ctx.passwords.verify(user.password_hash, password)

    return await logins.confirm(
        session,
        ctx,
        user=user,
        client=caller.client,
        check=check,
        refusal=errors.WrongCurrentPassword(),
    )


async def update_me(
    session: AsyncSession, ctx: AuthContext, caller: Caller, data: UpdateMeRequest
) -> User | errors.Refusal:
    user = await active_user_for_update(session, caller.user_id)
    new_email = data.email if data.email is not None and data.email != user.email else None
    if data.new_password is not None:
        check_password_policy(
            data.new_password,
            username=user.username,
            email=new_email or user.email,
            field="new_password",
        )
    if new_email is not None or data.new_password is not None:
        refusal = await reauthenticate(
            session, ctx, user=user, password=data.current_password, caller=caller
        )
        if refusal is not None:
            return refusal
    if new_email is not None and await repository.email_taken(
        session, email=new_email, except_user=user.id
    ):
        raise errors.EmailTaken()

    changed = False
    for name in ("full_name", "timezone"):
        value = getattr(data, name)
        if name in data.model_fields_set and value != getattr(user, name):
            if name == "timezone" and value is None:
                continue
            setattr(user, name, value)
            changed = True
    if new_email is not None:
        user.email = new_email
        changed = True
    if data.new_password is not None:
        user.password_hash = await ctx.passwords.hash(data.new_password)
        await sessions.end_other_sessions(
            session, ctx, user_id=user.id, keep=caller.session_id, reason="password_changed"
        )
        log.info("auth.password.changed", user_id=str(user.id))
    if changed:
        await events.user_updated(session, user)
    try:
        await session.flush()
    except IntegrityError as exc:  # a concurrent change took the email first
        raise errors.EmailTaken() from exc
    return user


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
