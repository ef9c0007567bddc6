"""Login sessions and their refresh tokens: start, refresh (rotating), end, list.

A session's refresh token is stored only as its SHA-256. Each refresh issues a new token and
remembers the used one: a used token sent again means someone else holds a copy, and the whole
session ends (RFC 9700 §4.14.2).

A user's HTTP Basic credentials checked by the gateway (MLflow's username and password) share
one session of kind ``basic_auth`` (ADR 0021): each check that passes gets an access token on it
(no refresh token is ever handed out for it), and a new one starts only when none is live.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from runyard.auth import devices, errors, repository, security, tokens
from runyard.auth.callers import ClientInfo
from runyard.auth.context import AuthContext
from runyard.auth.models import RotatedRefreshToken, SessionLog, User
from runyard.shared.contracts.auth import SessionRevoked
from runyard.shared.db import new_id
from runyard.shared.identity import client_network
from runyard.shared.logging import get_logger
from runyard.shared.outbox import emit
from runyard.shared.pagination import cut, decode_cursor

log = get_logger(__name__)

PAGE_KIND = "sessions"
#: ``SessionLog.kind``: a login that got a refresh token
LOGIN = "login"
#: ``SessionLog.kind``: the user's one session of Basic credentials checked by the gateway
BASIC_AUTH = "basic_auth"


@dataclass(frozen=True)
class IssuedTokens:
    access_token: str
    refresh_token: str
    expires_in: int
    refresh_expires_in: int
    session_id: uuid.UUID


@dataclass(frozen=True)
class IssuedAccess:
    """An access token alone (Basic credentials: the gateway keeps no refresh token)."""

    access_token: str
    expires_in: int
    session_id: uuid.UUID


def issue_access(ctx: AuthContext, *, user: User, row: SessionLog, now: datetime) -> IssuedAccess:
    access = security.issue_access_token(
        ctx.signing_key,
        user_id=user.id,
        username=user.username,
        role=user.role,
        session_id=row.id,
        now=now,
        ttl_seconds=ctx.settings.access_token_ttl_seconds,
    )
    return IssuedAccess(access_token=access.token, expires_in=access.expires_in, session_id=row.id)


def _issue(
    ctx: AuthContext, *, user: User, row: SessionLog, refresh_token: str, now: datetime
) -> IssuedTokens:
    access = issue_access(ctx, user=user, row=row, now=now)
    return IssuedTokens(
        access_token=access.access_token,
        refresh_token=refresh_token,
        expires_in=access.expires_in,
        refresh_expires_in=ctx.settings.refresh_token_ttl_seconds,
        session_id=row.id,
    )


async def start_session(
    session: AsyncSession,
    ctx: AuthContext,
    *,
    user: User,
    client: ClientInfo,
    now: datetime,
    kind: str = LOGIN,
) -> tuple[IssuedTokens, SessionLog]:
    refresh_token = tokens.new_refresh_token()
    device = devices.describe(client.user_agent)
    row = SessionLog(
        id=new_id(),
        user_id=user.id,
        session_token=tokens.sha256_hex(refresh_token),
        refresh_expires_at=now + timedelta(seconds=ctx.settings.refresh_token_ttl_seconds),
        ip_address=client.ip_address,
        user_agent=client.user_agent,
        device_type=device.device_type,
        browser=device.browser,
        os=device.os,
        last_active=now,
        is_active=True,
        kind=kind,
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    await session.flush()
    return _issue(ctx, user=user, row=row, refresh_token=refresh_token, now=now), row


async def basic_auth_session(
    session: AsyncSession, ctx: AuthContext, *, user: User, client: ClientInfo, now: datetime
) -> tuple[SessionLog, bool]:
    """The user's live ``basic_auth`` session, renewed (the password was just checked: as good
    as a new login), or a new one when none is live (never one that ended: no resurrection).
    The flag: it is new, or the client's network is not the one it last saw (a login worth
    recording in the history)."""
    row = await repository.live_session_of_kind_for_update(
        session, user_id=user.id, kind=BASIC_AUTH, now=now
    )
    if row is None:
        _unused, row = await start_session(
            session, ctx, user=user, client=client, now=now, kind=BASIC_AUTH
        )
        return row, True
    seen_from = client_network(row.ip_address) if row.ip_address else None
    moved = seen_from != client.client_key
    row.refresh_expires_at = now + timedelta(seconds=ctx.settings.refresh_token_ttl_seconds)
    row.last_active = now
    if client.ip_address:
        row.ip_address = client.ip_address
    await session.flush()
    return row, moved


async def _session_of_token(
    session: AsyncSession, token_hash: str
) -> tuple[SessionLog | None, bool]:
    """The session (locked) whose refresh token, current or already used, hashes to
    ``token_hash``, and whether the token is a used one."""
    row = await repository.session_by_token_for_update(session, token_hash)
    if row is not None:
        return row, False
    rotated = await repository.rotated_token(session, token_hash)
    if rotated is None:
        return None, False
    return await repository.get_session_for_update(session, rotated.session_id), True


async def refresh(
    session: AsyncSession, ctx: AuthContext, *, refresh_token: str, client: ClientInfo
) -> IssuedTokens | errors.Refusal:
    """Exchange a refresh token for a new pair. A token that was already exchanged ends its
    whole session."""
    now = ctx.clock.now()
    token_hash = tokens.sha256_hex(refresh_token)
    row, used = await _session_of_token(session, token_hash)
    if used:
        if row is not None and row.is_active:
            await end_session(session, row, reason="refresh_token_reused", now=now)
            log.warning(
                "auth.refresh_token.reused",
                session_id=str(row.id),
                user_id=str(row.user_id),
                ip=client.ip_address,
            )
        await session.flush()
        return errors.InvalidRefreshToken()
    if row is None:
        return errors.InvalidRefreshToken()
    user = await repository.get_user(session, row.user_id)
    if not row.is_active or row.refresh_expires_at <= now or user is None or not user.is_active:
        return errors.InvalidRefreshToken()

    session.add(
        RotatedRefreshToken(
            token_hash=token_hash,
            session_id=row.id,
            rotated_at=now,
            expires_at=row.refresh_expires_at,
        )
    )
    new_token = tokens.new_refresh_token()
    row.session_token = tokens.sha256_hex(new_token)
    row.refresh_expires_at = now + timedelta(seconds=ctx.settings.refresh_token_ttl_seconds)
    row.last_active = now
    if client.ip_address:
        row.ip_address = client.ip_address
    await session.flush()
    log.info("auth.session.refreshed", session_id=str(row.id))
    return _issue(ctx, user=user, row=row, refresh_token=new_token, now=now)


async def end_session(
    session: AsyncSession, row: SessionLog, *, reason: str, now: datetime
) -> None:
    """Mark the session ended (its refresh token stops working at once) and publish it."""
    row.is_active = False
    row.logged_out_at = now
    row.revoked_reason = reason
    await emit(
        session,
        SessionRevoked(session_id=row.id, user_id=row.user_id, reason=reason),
        subject=row.id,
    )


async def end_other_sessions(
    session: AsyncSession,
    ctx: AuthContext,
    *,
    user_id: uuid.UUID,
    keep: uuid.UUID | None,
    reason: str,
) -> int:
    """End every active session of the user but ``keep``."""
    rows = await repository.active_sessions_for_update(session, user_id=user_id, keep=keep)
    now = ctx.clock.now()
    for row in rows:
        await end_session(session, row, reason=reason, now=now)
    if rows:
        log.info("auth.sessions.revoked", user_id=str(user_id), count=len(rows), reason=reason)
    return len(rows)


async def log_out(
    session: AsyncSession,
    ctx: AuthContext,
    *,
    refresh_token: str | None,
    session_id: uuid.UUID | None,
    user_id: uuid.UUID | None,
) -> None:
    """End the session named by its refresh token (current or already rotated) or by id."""
    row: SessionLog | None
    if refresh_token is not None:
        row, _used = await _session_of_token(session, tokens.sha256_hex(refresh_token))
    elif session_id is not None:
        row = await repository.get_session_for_update(session, session_id)
    else:
        raise errors.RefreshTokenRequired()
    if row is None or not row.is_active or (user_id is not None and row.user_id != user_id):
        return
    await end_session(session, row, reason="logout", now=ctx.clock.now())
    await session.flush()
    log.info("auth.session.logged_out", session_id=str(row.id))


async def revoke_session(
    session: AsyncSession, ctx: AuthContext, *, user_id: uuid.UUID, session_id: uuid.UUID
) -> None:
    row = await repository.get_session_for_update(session, session_id)
    if row is None or row.user_id != user_id:
        raise errors.NoSuchSession()
    if row.is_active:
        await end_session(session, row, reason="revoked", now=ctx.clock.now())
        await session.flush()


async def list_sessions(
    session: AsyncSession,
    ctx: AuthContext,
    *,
    user_id: uuid.UUID,
    include_inactive: bool,
    limit: int,
    cursor: str | None,
) -> tuple[Sequence[SessionLog], str | None]:
    """The user's sessions, newest first; only the live ones unless ``include_inactive``."""
    rows = await repository.list_sessions(
        session,
        user_id=user_id,
        active_after=None if include_inactive else ctx.clock.now(),
        limit=limit,
        after=decode_cursor(cursor, PAGE_KIND, datetime, uuid.UUID),
    )
    return cut(rows, limit, PAGE_KIND, lambda row: (row.created_at, row.id))


async def session_status(
    session: AsyncSession, *, session_id: uuid.UUID
) -> tuple[SessionLog, User]:
    found = await repository.session_with_user(session, session_id)
    if found is None:
        raise errors.NoSuchSession()
    return found


def session_is_live(row: SessionLog, now: datetime) -> bool:
    return row.is_active and row.refresh_expires_at > now
