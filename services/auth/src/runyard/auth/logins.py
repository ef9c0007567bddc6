"""Logins, brute-force defence, sessions and refresh tokens.

Every attempt lands in ``login_history``. Rejections are returned (as ``Refusal``), not raised,
so the request's transaction still commits what the attempt changed: the history row, the
failure counters, the events.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from runyard.auth import devices, events, repository, security, tokens, totp
from runyard.auth.context import AuthContext
from runyard.auth.lockout import FailureState, after_failure
from runyard.auth.models import LoginHistory, RotatedRefreshToken, SessionLog, User
from runyard.shared.contracts.auth import AccountLocked, LoginFailed, LoginSucceeded
from runyard.shared.db import new_id
from runyard.shared.http import ProblemError
from runyard.shared.logging import get_logger

log = get_logger(__name__)

INVALID_CREDENTIALS = "Invalid username, email or password."
LOCKED = "Too many failed attempts. Try again later."
#: Failures that count towards the per-address limit (attempts that were judged, and failed).
COUNTED_FAILURES = ("unknown_user", "invalid_password", "invalid_totp")


@dataclass(frozen=True)
class ClientInfo:
    ip_address: str | None
    user_agent: str | None


@dataclass(frozen=True)
class Refusal:
    """A refused request whose side effects must still commit; the API renders it."""

    status: int
    title: str
    detail: str
    headers: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


def invalid_credentials() -> Refusal:
    return Refusal(401, "Unauthorized", INVALID_CREDENTIALS)


def locked(retry_after: int) -> Refusal:
    return Refusal(423, "Locked", LOCKED, headers={"Retry-After": str(retry_after)})


def two_factor_required(detail: str) -> Refusal:
    return Refusal(
        401,
        "Two-factor authentication required",
        detail,
        extra={"code": "two_factor_required"},
    )


# --- lockout ----------------------------------------------------------------------------------


def user_failure_state(user: User) -> FailureState:
    return FailureState(
        failures=user.failed_login_attempts,
        last_failure_at=user.last_failed_login_at,
        locked_until=user.locked_until,
    )


async def record_user_failure(
    session: AsyncSession, ctx: AuthContext, *, user: User, client: ClientInfo, now: datetime
) -> FailureState:
    """Count one failure against ``user``; publishes ``account.locked`` when a lock starts."""
    state = after_failure(ctx.lockout, user_failure_state(user), now)
    user.failed_login_attempts = state.failures
    user.last_failed_login_at = state.last_failure_at
    user.locked_until = state.locked_until
    if state.locked_until is not None:
        await events.publish(
            session,
            AccountLocked(
                user_id=user.id,
                username=user.username,
                locked_until=state.locked_until,
                consecutive_failures=state.failures,
                ip_address=client.ip_address,
            ),
            subject=user.id,
            sequence=events.bump_version(user),
        )
        log.warning(
            "auth.account.locked",
            user_id=str(user.id),
            failures=state.failures,
            locked_until=state.locked_until.isoformat(),
        )
    return state


def clear_failures(user: User) -> None:
    user.failed_login_attempts = 0
    user.last_failed_login_at = None
    user.locked_until = None


def refuse_if_locked(user: User, now: datetime) -> Refusal | None:
    state = user_failure_state(user)
    return locked(state.retry_after(now)) if state.is_locked(now) else None


async def _ip_retry_after(
    session: AsyncSession, ctx: AuthContext, *, ip: str | None, now: datetime
) -> int | None:
    if ip is None:
        return None
    window = timedelta(seconds=ctx.settings.login_ip_window_seconds)
    anchor = await repository.ip_blocked_until_anchor(
        session,
        ip=ip,
        since=now - window,
        reasons=COUNTED_FAILURES,
        limit=ctx.settings.login_ip_max_failures,
    )
    if anchor is None:
        return None
    return max(1, int((anchor + window - now).total_seconds() + 0.999))


# --- login ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedTokens:
    access_token: str
    refresh_token: str
    expires_in: int
    refresh_expires_in: int
    session_id: uuid.UUID


async def log_in(
    session: AsyncSession,
    ctx: AuthContext,
    *,
    login: str,
    password: str,
    totp_code: str | None,
    client: ClientInfo,
) -> IssuedTokens | Refusal:
    now = ctx.clock.now()
    attempt = _Attempt(session, login=login, client=client, now=now)

    ip_wait = await _ip_retry_after(session, ctx, ip=client.ip_address, now=now)
    if ip_wait is not None:
        attempt.record(user=None, reason="ip_rate_limited")
        log.warning("auth.login.ip_limited", ip=client.ip_address)
        return Refusal(
            429,
            "Too Many Requests",
            "Too many failed logins from your address. Try again later.",
            headers={"Retry-After": str(ip_wait)},
        )

    user = await repository.get_user_by_login_for_update(session, login)
    if user is None:
        return await _unknown_login(session, ctx, attempt, password=password)

    refusal = refuse_if_locked(user, now)
    if refusal is not None:
        attempt.record(user=user, reason="account_locked")
        return refusal

    if not await ctx.passwords.verify(user.password_hash, password):
        state = await record_user_failure(session, ctx, user=user, client=client, now=now)
        await attempt.fail(user=user, reason="invalid_password", failures=state.failures)
        return invalid_credentials()
    if not user.is_active:
        await attempt.fail(user=user, reason="inactive_user", failures=user.failed_login_attempts)
        return invalid_credentials()

    method = "password"
    if user.totp_enabled:
        if not totp_code:
            attempt.record(user=user, reason="two_factor_required")
            return two_factor_required("Send the code from your authenticator app as totp_code.")
        factor = await second_factor(session, ctx, user=user, code=totp_code, client=client)
        if factor is None:
            state = await record_user_failure(session, ctx, user=user, client=client, now=now)
            await attempt.fail(user=user, reason="invalid_totp", failures=state.failures)
            return two_factor_required("The code is not valid. Try the next one.")
        method = factor

    if ctx.passwords.needs_rehash(user.password_hash):
        user.password_hash = await ctx.passwords.hash(password)
        log.info("auth.password.rehashed", user_id=str(user.id))
    clear_failures(user)
    user.last_login_at = now
    issued, row = await start_session(session, ctx, user=user, client=client, now=now)
    attempt.record(user=user, reason=None, method=method, session_id=row.id)
    await events.publish(
        session,
        LoginSucceeded(
            user_id=user.id,
            username=user.username,
            session_id=row.id,
            ip_address=client.ip_address,
            user_agent=client.user_agent,
        ),
        subject=user.id,
    )
    await session.flush()
    log.info("auth.login.succeeded", user_id=str(user.id), session_id=str(row.id), method=method)
    return issued


async def _unknown_login(
    session: AsyncSession, ctx: AuthContext, attempt: _Attempt, *, password: str
) -> Refusal:
    """The same steps, time and answers as for a real account, on a lockout row of its own."""
    row = await repository.unknown_login_failure_for_update(session, attempt.login.lower())
    state = FailureState(row.failures, row.last_failure_at, row.locked_until)
    if state.is_locked(attempt.now):
        attempt.record(user=None, reason="account_locked")
        return locked(state.retry_after(attempt.now))
    await ctx.passwords.verify_dummy(password)
    state = after_failure(ctx.lockout, state, attempt.now)
    row.failures, row.last_failure_at, row.locked_until = (
        state.failures,
        state.last_failure_at,
        state.locked_until,
    )
    await attempt.fail(user=None, reason="unknown_user", failures=0)
    return invalid_credentials()


@dataclass
class _Attempt:
    session: AsyncSession
    login: str
    client: ClientInfo
    now: datetime

    def record(
        self,
        *,
        user: User | None,
        reason: str | None,
        method: str = "password",
        session_id: uuid.UUID | None = None,
    ) -> None:
        repository.add_login_history(
            self.session,
            LoginHistory(
                id=new_id(),
                user_id=user.id if user else None,
                username_attempted=self.login[:254],
                login_method=method,
                success=reason is None,
                failure_reason=reason,
                ip_address=self.client.ip_address,
                user_agent=self.client.user_agent,
                session_id=session_id,
                created_at=self.now,
            ),
        )

    async def fail(self, *, user: User | None, reason: str, failures: int) -> None:
        """History row + ``login.failed`` (only for attempts that were judged)."""
        self.record(user=user, reason=reason)
        await events.publish(
            self.session,
            LoginFailed(
                username_attempted=self.login,
                user_id=user.id if user else None,
                ip_address=self.client.ip_address,
                user_agent=self.client.user_agent,
                reason=reason,
                consecutive_failures=failures,
            ),
            subject=user.id if user else self.login.lower(),
        )
        await self.session.flush()
        log.info("auth.login.failed", reason=reason, user_id=str(user.id) if user else None)


async def second_factor(
    session: AsyncSession, ctx: AuthContext, *, user: User, code: str, client: ClientInfo
) -> str | None:
    """Accept a TOTP code (once) or an unused backup code; the method used, else None."""
    if user.totp_secret is None:
        return None
    now = ctx.clock.now()
    if totp.looks_like_totp(code):
        secret = ctx.secret_box.open(user.totp_secret)
        step = totp.matching_step(secret, code, now=now, last_used_step=user.totp_last_used_step)
        if step is None:
            return None
        user.totp_last_used_step = step
        return "totp"
    normalized = totp.normalize_backup_code(code)
    if normalized is None:
        return None
    for backup in await repository.unused_backup_codes(session, user.id):
        if await ctx.passwords.verify(backup.code_hash, normalized):
            backup.is_used = True
            backup.used_at = now
            backup.ip_address = client.ip_address
            log.info("auth.backup_code.used", user_id=str(user.id))
            return "backup_code"
    return None


# --- sessions and refresh tokens --------------------------------------------------------------


def _issue(
    ctx: AuthContext, *, user: User, row: SessionLog, refresh_token: str, now: datetime
) -> IssuedTokens:
    access = security.issue_access_token(
        ctx.signing_key,
        user_id=user.id,
        username=user.username,
        role=user.role,
        session_id=row.id,
        now=now,
        ttl_seconds=ctx.settings.access_token_ttl_seconds,
    )
    return IssuedTokens(
        access_token=access.token,
        refresh_token=refresh_token,
        expires_in=access.expires_in,
        refresh_expires_in=ctx.settings.refresh_token_ttl_seconds,
        session_id=row.id,
    )


async def start_session(
    session: AsyncSession, ctx: AuthContext, *, user: User, client: ClientInfo, now: datetime
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
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    await session.flush()
    return _issue(ctx, user=user, row=row, refresh_token=refresh_token, now=now), row


INVALID_REFRESH = "The refresh token is invalid or expired. Log in again."


async def refresh(
    session: AsyncSession, ctx: AuthContext, *, refresh_token: str, client: ClientInfo
) -> IssuedTokens | Refusal:
    """Exchange a refresh token for a new pair. A token that was already exchanged revokes
    its whole session (someone else holds a copy: RFC 9700 §4.14.2)."""
    now = ctx.clock.now()
    token_hash = tokens.sha256_hex(refresh_token)
    row = await repository.session_by_token_for_update(session, token_hash)
    if row is None:
        rotated = await repository.rotated_token(session, token_hash)
        if rotated is not None:
            reused = await repository.get_session_for_update(session, rotated.session_id)
            if reused is not None and reused.is_active:
                await end_session(session, reused, reason="refresh_token_reused", now=now)
                log.warning(
                    "auth.refresh_token.reused",
                    session_id=str(reused.id),
                    user_id=str(reused.user_id),
                    ip=client.ip_address,
                )
            await session.flush()
        return Refusal(401, "Unauthorized", INVALID_REFRESH)
    user = await repository.get_user(session, row.user_id)
    if not row.is_active or row.refresh_expires_at <= now or user is None or not user.is_active:
        return Refusal(401, "Unauthorized", INVALID_REFRESH)

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
    await events.publish_session_revoked(session, row, reason)


async def end_other_sessions(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    keep: uuid.UUID | None,
    reason: str,
    now: datetime,
) -> int:
    rows = await repository.active_sessions_for_update(session, user_id=user_id, keep=keep)
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
    row: SessionLog | None = None
    if refresh_token is not None:
        token_hash = tokens.sha256_hex(refresh_token)
        row = await repository.session_by_token_for_update(session, token_hash)
        if row is None:
            rotated = await repository.rotated_token(session, token_hash)
            if rotated is not None:
                row = await repository.get_session_for_update(session, rotated.session_id)
    elif session_id is not None:
        row = await repository.get_session_for_update(session, session_id)
    else:
        raise ProblemError(
            422,
            "Validation failed",
            "Send the session's refresh_token.",
            errors=[{"loc": ["body", "refresh_token"], "msg": "Field required", "type": "missing"}],
        )
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
        raise ProblemError(404, "Not Found", "No such session.")
    if row.is_active:
        await end_session(session, row, reason="revoked", now=ctx.clock.now())
        await session.flush()


async def session_status(
    session: AsyncSession, ctx: AuthContext, *, session_id: uuid.UUID
) -> tuple[SessionLog, User]:
    found = await repository.session_with_user(session, session_id)
    if found is None:
        raise ProblemError(404, "Not Found", "No such session.")
    return found


def session_is_live(row: SessionLog, now: datetime) -> bool:
    return row.is_active and row.refresh_expires_at > now
