"""Logins: credential checks, the brute-force defence around them, and the login history.
The gateway's checks of HTTP Basic credentials (``check_basic_credentials``, ADR 0021) take the
same steps and differ only in the session they answer with.

Every attempt lands in ``login_history``. Rejections are returned (as ``errors.Refusal``), not
raised, so the request's transaction still commits what the attempt changed: the history row,
the failure counters, the events.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from runyard.auth import errors, events, repository, totp
from runyard.auth.callers import ClientInfo
from runyard.auth.context import AuthContext
from runyard.auth.lockout import FailureState, after_failure
from runyard.auth.models import LoginHistory, SessionLog, User
from runyard.auth.sessions import (
    IssuedAccess,
    IssuedTokens,
    basic_auth_session,
    issue_access,
    start_session,
)
from runyard.shared.contracts.auth import AccountLocked, LoginFailed, LoginSucceeded
from runyard.shared.db import new_id
from runyard.shared.logging import get_logger
from runyard.shared.outbox import emit
from runyard.shared.pagination import cut, decode_cursor

log = get_logger(__name__)

#: Failures that count towards the per-address limit (attempts that were judged, and failed).
COUNTED_FAILURES = ("unknown_user", "invalid_password", "invalid_totp")
HISTORY_PAGE_KIND = "login_history"

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
        await events.user_changed(
            session,
            user,
            AccountLocked(
                user_id=user.id,
                username=user.username,
                locked_until=state.locked_until,
                consecutive_failures=state.failures,
                ip_address=client.ip_address,
            ),
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


def refuse_if_locked(user: User, now: datetime) -> errors.Refusal | None:
    state = user_failure_state(user)
    return errors.Locked(state.retry_after(now)) if state.is_locked(now) else None


async def confirm(
    session: AsyncSession,
    ctx: AuthContext,
    *,
    user: User,
    client: ClientInfo,
    check: Callable[[], Awaitable[bool]],
    refusal: errors.Refusal,
) -> errors.Refusal | None:
    """Confirm a sensitive change to ``user``'s account (with the password, a code): refused
    while the account is locked; a failed ``check`` counts like a failed login and refuses with
    ``refusal``; a passed one clears the failures."""
    now = ctx.clock.now()
    locked = refuse_if_locked(user, now)
    if locked is not None:
        return locked
    if not await check():
        await record_user_failure(session, ctx, user=user, client=client, now=now)
        await session.flush()
        return refusal
    clear_failures(user)
    return None


async def _ip_retry_after(
    session: AsyncSession, ctx: AuthContext, *, client_key: str | None, now: datetime
) -> int | None:
    """Seconds the client (an IPv4 address, an IPv6 /64) must wait, or None."""
    if client_key is None:
        return None
    window = timedelta(seconds=ctx.settings.login_ip_window_seconds)
    anchor = await repository.ip_blocked_until_anchor(
        session,
        client_key=client_key,
        since=now - window,
        reasons=COUNTED_FAILURES,
        limit=ctx.settings.login_ip_max_failures,
    )
    if anchor is None:
        return None
    return max(1, int((anchor + window - now).total_seconds() + 0.999))


# --- login ------------------------------------------------------------------------------------


async def log_in(
    session: AsyncSession,
    ctx: AuthContext,
    *,
    login: str,
    password: str,
    totp_code: str | None,
    client: ClientInfo,
) -> IssuedTokens | errors.Refusal:
    attempt = _Attempt(session, login=login, client=client, now=ctx.clock.now())
    judged = await _judge(session, ctx, attempt, password=password, totp_code=totp_code)
    if isinstance(judged, errors.Refusal):
        return judged
    user, method = judged
    issued, row = await start_session(session, ctx, user=user, client=client, now=attempt.now)
    await _succeeded(attempt, user=user, method=method, row=row)
    return issued


async def check_basic_credentials(
    session: AsyncSession, ctx: AuthContext, *, login: str, password: str, client: ClientInfo
) -> IssuedAccess | errors.Refusal:
    """HTTP Basic credentials the gateway checks (MLflow's username and password): judged by
    the very steps of ``log_in`` without a code (per-client limit, lockout, failures counted and
    recorded; a two-factor account is refused), then an access token on the user's one
    ``basic_auth`` session, started only when none is live. A passing check is recorded in the
    history (and published) only when it starts the session or comes from another network than
    the session last saw: a client re-checking every few minutes leaves one entry, not hundreds."""
    attempt = _Attempt(session, login=login, client=client, now=ctx.clock.now())
    judged = await _judge(session, ctx, attempt, password=password, totp_code=None)
    if isinstance(judged, errors.Refusal):
        return judged
    user, method = judged
    row, worth_recording = await basic_auth_session(
        session, ctx, user=user, client=client, now=attempt.now
    )
    if worth_recording:
        await _succeeded(attempt, user=user, method=method, row=row)
    else:
        await session.flush()
    return issue_access(ctx, user=user, row=row, now=attempt.now)


async def _judge(
    session: AsyncSession,
    ctx: AuthContext,
    attempt: _Attempt,
    *,
    password: str,
    totp_code: str | None,
) -> tuple[User, str] | errors.Refusal:
    """Every check of a login, failures counted and recorded: the user and the method
    (``password``, ``totp``, ``backup_code``) when it passes, which clears the failures."""
    client, now = attempt.client, attempt.now
    ip_wait = await _ip_retry_after(session, ctx, client_key=client.client_key, now=now)
    if ip_wait is not None:
        attempt.record(user=None, reason="ip_rate_limited")
        log.warning("auth.login.ip_limited", ip=client.ip_address)
        return errors.TooManyFailedLogins(ip_wait)

    user = await repository.get_user_by_login_for_update(session, attempt.login)
    if user is None:
        return await _unknown_login(session, ctx, attempt, password=password)

    refusal = refuse_if_locked(user, now)
    if refusal is not None:
        attempt.record(user=user, reason="account_locked")
        return refusal

    if not await ctx.passwords.verify(user.password_hash, password):
        state = await record_user_failure(session, ctx, user=user, client=client, now=now)
        await attempt.fail(user=user, reason="invalid_password", failures=state.failures)
        return errors.InvalidCredentials()
    if not user.is_active:
        await attempt.fail(user=user, reason="inactive_user", failures=user.failed_login_attempts)
        return errors.InvalidCredentials()

    method = "password"
    if user.totp_enabled:
        if not totp_code:
            attempt.record(user=user, reason="two_factor_required")
            return errors.TwoFactorRequired(
                "Send the code from your authenticator app as totp_code."
            )
        factor = await second_factor(session, ctx, user=user, code=totp_code, client=client)
        if factor is None:
            state = await record_user_failure(session, ctx, user=user, client=client, now=now)
            await attempt.fail(user=user, reason="invalid_totp", failures=state.failures)
            return errors.TwoFactorRequired("The code is not valid. Try the next one.")
        method = factor

    if ctx.passwords.needs_rehash(user.password_hash):
        user.password_hash = await ctx.passwords.hash(password)
        log.info("auth.password.rehashed", user_id=str(user.id))
    clear_failures(user)
    user.last_login_at = now
    return user, method


async def _succeeded(attempt: _Attempt, *, user: User, method: str, row: SessionLog) -> None:
    """History row and ``login.succeeded`` of a login that passed into session ``row``."""
    attempt.record(user=user, reason=None, method=method, session_id=row.id)
    await emit(
        attempt.session,
        LoginSucceeded(
            user_id=user.id,
            username=user.username,
            session_id=row.id,
            ip_address=attempt.client.ip_address,
            user_agent=attempt.client.user_agent,
        ),
        subject=user.id,
    )
    await attempt.session.flush()
    log.info(
        "auth.login.succeeded",
        user_id=str(user.id),
        session_id=str(row.id),
        method=method,
        kind=row.kind,
    )


async def _unknown_login(
    session: AsyncSession, ctx: AuthContext, attempt: _Attempt, *, password: str
) -> errors.Refusal:
    """The same steps, time and answers as for a real account, on a lockout row of its own."""
    row = await repository.unknown_login_failure_for_update(session, attempt.login.lower())
    state = FailureState(row.failures, row.last_failure_at, row.locked_until)
    if state.is_locked(attempt.now):
        attempt.record(user=None, reason="account_locked")
        return errors.Locked(state.retry_after(attempt.now))
    await ctx.passwords.verify_dummy(password)
    state = after_failure(ctx.lockout, state, attempt.now)
    row.failures, row.last_failure_at, row.locked_until = (
        state.failures,
        state.last_failure_at,
        state.locked_until,
    )
    await attempt.fail(user=None, reason="unknown_user", failures=0)
    return errors.InvalidCredentials()


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
                client_key=self.client.client_key,
                user_agent=self.client.user_agent,
                session_id=session_id,
                created_at=self.now,
            ),
        )

    async def fail(self, *, user: User | None, reason: str, failures: int) -> None:
        """History row + ``login.failed`` (only for attempts that were judged)."""
        self.record(user=user, reason=reason)
        await emit(
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
    if totp.looks_like_totp(code):
        return "totp" if accept_totp(ctx, user=user, code=code) else None
    normalized = totp.normalize_backup_code(code)
    if normalized is None:
        return None
    for backup in await repository.unused_backup_codes(session, user.id):
        if await ctx.passwords.verify(backup.code_hash, normalized):
            backup.is_used = True
            backup.used_at = ctx.clock.now()
            backup.ip_address = client.ip_address
            log.info("auth.backup_code.used", user_id=str(user.id))
            return "backup_code"
    return None


def accept_totp(ctx: AuthContext, *, user: User, code: str) -> bool:
    """Whether ``code`` is the user's current TOTP, not used before (then it is used up)."""
    if user.totp_secret is None:
        return False
    step = totp.matching_step(
        ctx.secret_box.open(user.totp_secret),
        code,
        now=ctx.clock.now(),
        last_used_step=user.totp_last_used_step,
    )
    if step is None:
        return False
    user.totp_last_used_step = step
    return True


# --- history ----------------------------------------------------------------------------------


async def login_history(
    session: AsyncSession, *, user_id: uuid.UUID, limit: int, cursor: str | None
) -> tuple[Sequence[LoginHistory], str | None]:
    """The user's login attempts, newest first."""
    rows = await repository.list_login_history(
        session,
        user_id=user_id,
        limit=limit,
        after=decode_cursor(cursor, HISTORY_PAGE_KIND, datetime, uuid.UUID),
    )
    return cut(rows, limit, HISTORY_PAGE_KIND, lambda row: (row.created_at, row.id))
