"""Every query of the auth service."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Select, TextClause, delete, func, or_, select, text, tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from runyard.auth.models import (
    SCHEMA,
    ApiKey,
    ApiUsage,
    BackupCode,
    LoginHistory,
    RotatedRefreshToken,
    SessionLog,
    UnknownLoginFailure,
    User,
)

#: Keyset for newest-first pages: (created_at, id) of the last row of the previous page.
Keyset = tuple[datetime, uuid.UUID]

Row = TypeVar("Row")


async def _newest_first(
    session: AsyncSession,
    query: Select[Row],
    at: InstrumentedAttribute[datetime],
    row_id: InstrumentedAttribute[Any],
    *,
    limit: int,
    after: tuple[datetime, Any] | None,
) -> Sequence[Row]:
    """One page, newest first, after the keyset ``after``, with one row more than ``limit``
    (it tells whether there is a next page)."""
    if after is not None:
        query = query.where(tuple_(at, row_id) < tuple_(*after))
    query = query.order_by(at.desc(), row_id.desc()).limit(limit + 1)
    return (await session.execute(query)).scalars().all()


# --- users ------------------------------------------------------------------------------------


async def insert_user_unless_taken(session: AsyncSession, **values: Any) -> User | None:
    """Insert a user; ``None`` if the username or email is taken (case-insensitively)."""
    result = await session.execute(
        insert(User).values(**values).on_conflict_do_nothing().returning(User)
    )
    return result.scalar_one_or_none()


async def taken_fields(session: AsyncSession, *, username: str, email: str) -> list[str]:
    """Which of ``username``/``email`` an existing user already holds."""
    rows = await session.execute(
        select(
            func.lower(User.username) == func.lower(username),
            func.lower(User.email) == func.lower(email),
        ).where(
            or_(
                func.lower(User.username) == func.lower(username),
                func.lower(User.email) == func.lower(email),
            )
        )
    )
    fields: set[str] = set()
    for same_username, same_email in rows:
        if same_username:
            fields.add("username")
        if same_email:
            fields.add("email")
    return sorted(fields)


async def email_taken(session: AsyncSession, *, email: str, except_user: uuid.UUID) -> bool:
    found = await session.execute(
        select(User.id).where(func.lower(User.email) == func.lower(email), User.id != except_user)
    )
    return found.first() is not None


async def get_user_by_login_for_update(session: AsyncSession, login: str) -> User | None:
    """By email if ``login`` contains ``@`` (usernames cannot), else by username."""
    column = User.email if "@" in login else User.username
    result = await session.execute(
        select(User).where(func.lower(column) == func.lower(login)).with_for_update()
    )
    return result.scalar_one_or_none()


async def get_user(session: AsyncSession, user_id: uuid.UUID) -> User | None:
    return await session.get(User, user_id)


async def get_user_for_update(session: AsyncSession, user_id: uuid.UUID) -> User | None:
    result = await session.execute(select(User).where(User.id == user_id).with_for_update())
    return result.scalar_one_or_none()


async def lock_active_admins(session: AsyncSession) -> list[uuid.UUID]:
    """Active admins' ids, row-locked: two demotions cannot both pass the last-admin check."""
    rows = await session.execute(
        select(User.id).where(User.role == "admin", User.is_active.is_(True)).with_for_update()
    )
    return list(rows.scalars())


@dataclass(frozen=True)
class UserFilter:
    """Which users an admin lists: by role, by state, by part of the username or email."""

    role: str | None = None
    is_active: bool | None = None
    q: str | None = None


async def list_users(
    session: AsyncSession, *, where: UserFilter, limit: int, after: Keyset | None
) -> Sequence[User]:
    query = select(User)
    if where.role is not None:
        query = query.where(User.role == where.role)
    if where.is_active is not None:
        query = query.where(User.is_active.is_(where.is_active))
    if where.q:
        pattern = (
            "%"
            + where.q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            + "%"
        )
        query = query.where(
            or_(func.lower(User.username).like(pattern), func.lower(User.email).like(pattern))
        )
    return await _newest_first(session, query, User.created_at, User.id, limit=limit, after=after)


# --- lockout of logins that name no user ------------------------------------------------------


async def unknown_login_failure_for_update(
    session: AsyncSession, login_key: str
) -> UnknownLoginFailure:
    await session.execute(
        insert(UnknownLoginFailure).values(login_key=login_key, failures=0).on_conflict_do_nothing()
    )
    result = await session.execute(
        select(UnknownLoginFailure)
        .where(UnknownLoginFailure.login_key == login_key)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return result.scalar_one()


async def delete_stale_unknown_login_failures(session: AsyncSession, *, before: datetime) -> int:
    result = await session.execute(
        delete(UnknownLoginFailure).where(
            or_(
                UnknownLoginFailure.last_failure_at < before,
                UnknownLoginFailure.last_failure_at.is_(None),
            ),
            or_(
                UnknownLoginFailure.locked_until.is_(None),
                UnknownLoginFailure.locked_until < before,
            ),
        )
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


# --- login history ----------------------------------------------------------------------------


def add_login_history(session: AsyncSession, entry: LoginHistory) -> None:
    session.add(entry)


async def ip_blocked_until_anchor(
    session: AsyncSession, *, client_key: str, since: datetime, reasons: Sequence[str], limit: int
) -> datetime | None:
    """The ``limit``-th most recent counted failure from the client (an IPv4 address, an IPv6
    /64) since ``since``, if there is one. The client stays blocked until that failure leaves
    the window.
    """
    result = await session.execute(
        select(LoginHistory.created_at)
        .where(
            LoginHistory.client_key == client_key,
            LoginHistory.created_at > since,
            LoginHistory.success.is_(False),
            LoginHistory.failure_reason.in_(reasons),
        )
        .order_by(LoginHistory.created_at.desc())
        .offset(limit - 1)
        .limit(1)
    )
    return result.scalar_one_or_none()


async def list_login_history(
    session: AsyncSession, *, user_id: uuid.UUID, limit: int, after: Keyset | None
) -> Sequence[LoginHistory]:
    query = select(LoginHistory).where(LoginHistory.user_id == user_id)
    return await _newest_first(
        session, query, LoginHistory.created_at, LoginHistory.id, limit=limit, after=after
    )


# --- sessions and refresh tokens --------------------------------------------------------------


async def session_by_token_for_update(session: AsyncSession, token_hash: str) -> SessionLog | None:
    result = await session.execute(
        select(SessionLog).where(SessionLog.session_token == token_hash).with_for_update()
    )
    return result.scalar_one_or_none()


async def rotated_token(session: AsyncSession, token_hash: str) -> RotatedRefreshToken | None:
    return await session.get(RotatedRefreshToken, token_hash)


async def session_with_user(
    session: AsyncSession, session_id: uuid.UUID
) -> tuple[SessionLog, User] | None:
    row = (
        await session.execute(
            select(SessionLog, User)
            .join(User, User.id == SessionLog.user_id)
            .where(SessionLog.id == session_id)
        )
    ).first()
    return None if row is None else (row[0], row[1])


async def get_session_for_update(session: AsyncSession, session_id: uuid.UUID) -> SessionLog | None:
    result = await session.execute(
        select(SessionLog).where(SessionLog.id == session_id).with_for_update()
    )
    return result.scalar_one_or_none()


async def active_sessions_for_update(
    session: AsyncSession, *, user_id: uuid.UUID, keep: uuid.UUID | None = None
) -> Sequence[SessionLog]:
    query = select(SessionLog).where(SessionLog.user_id == user_id, SessionLog.is_active.is_(True))
    if keep is not None:
        query = query.where(SessionLog.id != keep)
    return (await session.execute(query.with_for_update())).scalars().all()


async def live_session_of_kind_for_update(
    session: AsyncSession, *, user_id: uuid.UUID, kind: str, now: datetime
) -> SessionLog | None:
    """The user's newest session of ``kind`` that is active and not expired, locked."""
    query = (
        select(SessionLog)
        .where(
            SessionLog.user_id == user_id,
            SessionLog.kind == kind,
            SessionLog.is_active.is_(True),
            SessionLog.refresh_expires_at > now,
        )
        .order_by(SessionLog.created_at.desc(), SessionLog.id.desc())
        .limit(1)
        .with_for_update()
    )
    return (await session.execute(query)).scalar_one_or_none()


async def list_sessions(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    active_after: datetime | None,
    limit: int,
    after: Keyset | None,
) -> Sequence[SessionLog]:
    """Newest first. ``active_after``: only live sessions whose refresh token outlives it."""
    query = select(SessionLog).where(SessionLog.user_id == user_id)
    if active_after is not None:
        query = query.where(
            SessionLog.is_active.is_(True), SessionLog.refresh_expires_at > active_after
        )
    return await _newest_first(
        session, query, SessionLog.created_at, SessionLog.id, limit=limit, after=after
    )


async def delete_expired_rotated_tokens(session: AsyncSession, *, before: datetime) -> int:
    result = await session.execute(
        delete(RotatedRefreshToken).where(RotatedRefreshToken.expires_at < before)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


# --- backup codes -----------------------------------------------------------------------------


async def unused_backup_codes(session: AsyncSession, user_id: uuid.UUID) -> Sequence[BackupCode]:
    result = await session.execute(
        select(BackupCode)
        .where(BackupCode.user_id == user_id, BackupCode.is_used.is_(False))
        .order_by(BackupCode.created_at, BackupCode.id)
    )
    return result.scalars().all()


async def delete_backup_codes(session: AsyncSession, user_id: uuid.UUID) -> None:
    await session.execute(delete(BackupCode).where(BackupCode.user_id == user_id))


# --- API keys ---------------------------------------------------------------------------------


async def get_api_key(session: AsyncSession, key_id: uuid.UUID) -> ApiKey | None:
    return await session.get(ApiKey, key_id)


async def get_api_key_for_update(session: AsyncSession, key_id: uuid.UUID) -> ApiKey | None:
    result = await session.execute(select(ApiKey).where(ApiKey.id == key_id).with_for_update())
    return result.scalar_one_or_none()


async def active_api_keys_for_update(session: AsyncSession, user_id: uuid.UUID) -> Sequence[ApiKey]:
    result = await session.execute(
        select(ApiKey)
        .where(ApiKey.user_id == user_id, ApiKey.is_active.is_(True))
        .with_for_update()
    )
    return result.scalars().all()


async def api_key_with_owner(session: AsyncSession, key_hash: str) -> tuple[ApiKey, User] | None:
    row = (
        await session.execute(
            select(ApiKey, User)
            .join(User, User.id == ApiKey.user_id)
            .where(ApiKey.key_hash == key_hash)
        )
    ).first()
    return None if row is None else (row[0], row[1])


async def list_api_keys(
    session: AsyncSession, *, user_id: uuid.UUID, limit: int, after: Keyset | None
) -> Sequence[ApiKey]:
    query = select(ApiKey).where(ApiKey.user_id == user_id)
    return await _newest_first(
        session, query, ApiKey.created_at, ApiKey.id, limit=limit, after=after
    )


def _record_api_usage() -> TextClause:
    keys, usage = (f"{SCHEMA}.{m.__tablename__}" for m in (ApiKey, ApiUsage))
    return text(
        f"""
        WITH key AS (SELECT id FROM {keys} WHERE id = :key_id),
        touched AS (
            UPDATE {keys} SET last_used_at = :used_at
            WHERE id = :key_id AND (last_used_at IS NULL OR last_used_at < :used_at)
        )
        INSERT INTO {usage}
            (api_key_id, endpoint, method, status_code, response_time_ms, ip_address, timestamp)
        SELECT key.id, CAST(:endpoint AS varchar), CAST(:method AS varchar),
               CAST(:status_code AS integer), CAST(:response_time_ms AS double precision),
               CAST(:ip_address AS varchar), CAST(:used_at AS timestamptz)
        FROM key
        RETURNING id
        """  # noqa: S608 (table names only; every value is a parameter)
    )


#: ``record_api_usage``'s statement, built once: a training loop authenticated by a key makes an
#: ``api_key.used`` per request, hundreds a second, and the ORM's three statements (read the key,
#: insert the row, update the key, each compiled and its cache key computed anew) were most of
#: the auth service's CPU per event.
RECORD_API_USAGE = _record_api_usage()


async def record_api_usage(
    session: AsyncSession,
    *,
    key_id: uuid.UUID,
    endpoint: str,
    method: str,
    status_code: int,
    response_time_ms: float,
    ip_address: str | None,
    used_at: datetime,
) -> bool:
    """One ``api_usage`` row for the key, and its ``last_used_at`` moved forward to ``used_at``
    (never back: usage events may arrive out of order), in one statement. False: no such key,
    nothing written."""
    result = await session.execute(
        RECORD_API_USAGE,
        {
            "key_id": key_id,
            "endpoint": endpoint,
            "method": method,
            "status_code": status_code,
            "response_time_ms": response_time_ms,
            "ip_address": ip_address,
            "used_at": used_at,
        },
    )
    return result.first() is not None


async def api_usage_count(session: AsyncSession, key_id: uuid.UUID) -> int:
    result = await session.execute(
        select(func.count()).select_from(ApiUsage).where(ApiUsage.api_key_id == key_id)
    )
    return int(result.scalar_one())


async def list_api_usage(
    session: AsyncSession, *, key_id: uuid.UUID, limit: int, after: tuple[datetime, int] | None
) -> Sequence[ApiUsage]:
    query = select(ApiUsage).where(ApiUsage.api_key_id == key_id)
    return await _newest_first(
        session, query, ApiUsage.timestamp, ApiUsage.id, limit=limit, after=after
    )
