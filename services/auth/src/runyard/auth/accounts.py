"""Accounts: registration, your own profile and password, and what admins do to users."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from runyard.auth import events, logins, pages, repository
from runyard.auth.context import AuthContext
from runyard.auth.models import User
from runyard.auth.passwords import password_problems
from runyard.auth.schemas import AdminUpdateUserRequest, UpdateMeRequest
from runyard.shared.contracts.auth import UserRegistered
from runyard.shared.db import new_id
from runyard.shared.http import ProblemError
from runyard.shared.identity import Principal
from runyard.shared.logging import get_logger

log = get_logger(__name__)


def check_password_policy(password: str, *, username: str, email: str, field: str) -> None:
    problems = password_problems(password, username=username, email=email)
    if problems:
        raise ProblemError(
            422,
            "Validation failed",
            "The password is not acceptable.",
            errors=[
                {"loc": ["body", field], "msg": msg, "type": "password_policy"} for msg in problems
            ],
        )


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
        fields = await repository.taken_fields(session, username=username, email=email)
        raise ProblemError(
            409,
            "Conflict",
            f"{' and '.join(fields).capitalize() or 'Username or email'} already taken.",
            fields=fields,
        )
    await events.publish(
        session,
        UserRegistered(
            user_id=user.id,
            username=user.username,
            email=user.email,
            role=user.role,
            is_active=user.is_active,
            timezone=user.timezone,
            full_name=user.full_name,
        ),
        subject=user.id,
        sequence=user.version,
    )
    log.info("auth.user.registered", user_id=str(user.id), role=role)
    return user


async def get_user(session: AsyncSession, *, user_id: uuid.UUID) -> User:
    user = await repository.get_user(session, user_id)
    if user is None:
        raise ProblemError(404, "Not Found", "No such user.")
    return user


async def active_user_for_update(session: AsyncSession, user_id: uuid.UUID) -> User:
    """The caller's own row, locked; deactivated accounts may not change anything."""
    user = await repository.get_user_for_update(session, user_id)
    if user is None:
        raise ProblemError(404, "Not Found", "No such user.")
    if not user.is_active:
        raise ProblemError(403, "Forbidden", "This account is deactivated.")
    return user


async def reauthenticate(
    session: AsyncSession,
    ctx: AuthContext,
    *,
    user: User,
    password: str | None,
    client: logins.ClientInfo,
) -> logins.Refusal | None:
    """Check the current password for a sensitive change. Wrong ones count like failed logins."""
    if password is None:
        raise ProblemError(
            422,
            "Validation failed",
            "current_password is required to change the email address or the password.",
            errors=[
                {"loc": ["body", "current_password"], "msg": "Field required", "type": "missing"}
            ],
        )
    now = ctx.clock.now()
    refusal = logins.refuse_if_locked(user, now)
    if refusal is not None:
        return refusal
    if not await ctx.passwords.verify(user.password_hash, password):
        await logins.record_user_failure(session, ctx, user=user, client=client, now=now)
        await session.flush()
        return logins.Refusal(403, "Forbidden", "current_password is wrong.")
    logins.clear_failures(user)
    return None


async def update_me(
    session: AsyncSession,
    ctx: AuthContext,
    *,
    user_id: uuid.UUID,
    data: UpdateMeRequest,
    client: logins.ClientInfo,
    current_session: uuid.UUID | None,
) -> User | logins.Refusal:
    user = await active_user_for_update(session, user_id)
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
            session, ctx, user=user, password=data.current_password, client=client
        )
        if refusal is not None:
            return refusal
    if new_email is not None and await repository.email_taken(
        session, email=new_email, except_user=user.id
    ):
        raise ProblemError(409, "Conflict", "Email already taken.", fields=["email"])

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
        await logins.end_other_sessions(
            session,
            user_id=user.id,
            keep=current_session,
            reason="password_changed",
            now=ctx.clock.now(),
        )
        log.info("auth.password.changed", user_id=str(user.id))
    if changed:
        await events.publish_user_updated(session, user)
    try:
        await session.flush()
    except IntegrityError as exc:  # a concurrent change took the email first
        raise ProblemError(409, "Conflict", "Email already taken.", fields=["email"]) from exc
    return user


# --- admin ------------------------------------------------------------------------------------


def require_admin(principal: Principal) -> Principal:
    if not principal.is_admin:
        raise ProblemError(403, "Forbidden", "Only admins may do this.")
    return principal


async def list_users(
    session: AsyncSession,
    *,
    role: str | None,
    is_active: bool | None,
    q: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[Sequence[User], str | None]:
    rows = await repository.list_users(
        session, role=role, is_active=is_active, q=q, limit=limit, after=pages.decode(cursor)
    )
    return pages.cut(rows, limit, lambda u: (u.created_at, u.id))


async def admin_update_user(
    session: AsyncSession,
    ctx: AuthContext,
    *,
    user_id: uuid.UUID,
    data: AdminUpdateUserRequest,
) -> User:
    user = await repository.get_user_for_update(session, user_id)
    if user is None:
        raise ProblemError(404, "Not Found", "No such user.")
    role = data.role if data.role is not None else user.role
    is_active = data.is_active if data.is_active is not None else user.is_active
    if role == user.role and is_active == user.is_active:
        return user
    if user.role == "admin" and user.is_active and (role != "admin" or not is_active):
        admins = await repository.lock_active_admins(session)
        if not set(admins) - {user.id}:
            raise ProblemError(
                409, "Conflict", "This would leave no active admin.", fields=["role", "is_active"]
            )
    deactivated = user.is_active and not is_active
    role_changed = role != user.role
    user.role = role
    user.is_active = is_active
    if deactivated:
        await logins.end_other_sessions(
            session, user_id=user.id, keep=None, reason="user_deactivated", now=ctx.clock.now()
        )
        await events.publish_user_deactivated(session, user)
        # The full state last, with the highest sequence: a consumer that gets the two events
        # in either order ends with the right copy.
        if role_changed:
            await events.publish_user_updated(session, user)
        log.info("auth.user.deactivated", user_id=str(user.id))
    else:
        await events.publish_user_updated(session, user)
        log.info("auth.user.changed", user_id=str(user.id), role=role, is_active=is_active)
    await session.flush()
    return user


async def unlock_user(session: AsyncSession, *, user_id: uuid.UUID) -> User:
    user = await repository.get_user_for_update(session, user_id)
    if user is None:
        raise ProblemError(404, "Not Found", "No such user.")
    logins.clear_failures(user)
    await session.flush()
    log.info("auth.user.unlocked", user_id=str(user.id))
    return user
