"""Forgotten passwords: a single-use link by email, then a new password.

``POST /password-reset`` answers the same, after the same work, whether or not an account has
the address: it only records the request (the per-address and per-client limits count these
rows). A worker then looks the address up and, for an active account, stores a token's SHA-256
and publishes ``password_reset.requested``, from which the notifications service derives the
token and mails the link (see ``EmailLinkRequested``). Following the link sets a new password,
ends every session, revokes every API key and cancels pending email changes.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from runyard.auth import accounts, api_keys, errors, logins, repository, sessions, tokens
from runyard.auth.callers import ClientInfo
from runyard.auth.context import AuthContext, AuthRuntime
from runyard.auth.models import PasswordResetRequest, PasswordResetToken
from runyard.auth.recovery import repository as links
from runyard.shared.contracts.auth import PasswordChanged, PasswordResetRequested
from runyard.shared.db import new_id, session_scope
from runyard.shared.logging import get_logger
from runyard.shared.outbox import emit

log = get_logger(__name__)

BATCH = 50
#: longest pause when no request is pending: the request that stores one wakes the mailer at
#: once (``runtime.work``); this finds those stored by another replica
POLL_INTERVAL_S = 10.0


def email_key(email: str) -> str:
    return tokens.sha256_hex(email.strip().lower())


async def _retry_after(
    session: AsyncSession, ctx: AuthContext, *, request: PasswordResetRequest, now: datetime
) -> int | None:
    """Seconds until both limits allow one more request, or None when they do now."""
    window = timedelta(seconds=ctx.settings.password_reset_window_seconds)
    settings = ctx.settings
    limits: list[tuple[str, str | None, int]] = [
        ("email_key", request.email_key, settings.password_reset_max_per_address),
        ("client_key", request.client_key, settings.password_reset_max_per_client),
    ]
    waits = []
    for column, value, limit in limits:
        if value is None:
            continue
        anchor = await links.nth_recent_reset_request(
            session, column=column, value=value, since=now - window, n=limit
        )
        if anchor is not None:
            waits.append(max(1, int((anchor + window - now).total_seconds() + 0.999)))
    return max(waits) if waits else None


async def request_reset(
    session: AsyncSession, ctx: AuthContext, *, email: str, client: ClientInfo
) -> None:
    """Record the request (the same for every address); 429 past the limits."""
    now = ctx.clock.now()
    request = PasswordResetRequest(
        id=new_id(),
        email_key=email_key(email),
        email=email.strip(),
        client_key=client.client_key,
        ip_address=client.ip_address,
        created_at=now,
    )
    wait = await _retry_after(session, ctx, request=request, now=now)
    if wait is not None:
        log.warning("auth.password_reset.limited", client=client.client_key)
        raise errors.TooManyResetRequests(wait)
    session.add(request)
    await session.flush()


async def issue_reset_token(
    session: AsyncSession, ctx: AuthContext, *, request: PasswordResetRequest
) -> bool:
    """For an active account with the request's address: a token and its email event. The
    request is marked done and forgets the address either way. True if a link goes out."""
    now = ctx.clock.now()
    user = (
        await links.active_user_by_email_for_update(session, request.email)
        if request.email
        else None
    )
    request.processed_at = now
    request.email = None
    if user is None:
        return False
    payload = PasswordResetRequested(
        user_id=user.id,
        username=user.username,
        email=user.email,
        link_id=tokens.new_link_id(),
        expires_at=now + timedelta(seconds=ctx.settings.password_reset_token_ttl_seconds),
        ip_address=request.ip_address,
    )
    token = payload.link_token(ctx.settings.email_link_secret.get_secret_value())
    session.add(
        PasswordResetToken(
            id=new_id(),
            user_id=user.id,
            token_hash=tokens.sha256_hex(token),
            email=user.email,
            created_at=now,
            expires_at=payload.expires_at,
        )
    )
    await emit(session, payload, subject=user.id)
    log.info("auth.password_reset.issued", user_id=str(user.id))
    return True


async def process_reset_requests(runtime: AuthRuntime) -> int:
    """One batch of pending requests; how many there were."""
    ctx = runtime.context
    count = 0
    async for session in session_scope(runtime.sessionmaker):
        pending = await links.pending_reset_requests_for_update(session, limit=BATCH)
        for request in pending:
            await issue_reset_token(session, ctx, request=request)
        count = len(pending)
    return count


async def run_reset_mailer(runtime: AuthRuntime) -> None:
    while True:
        seen = runtime.work.generation
        if await process_reset_requests(runtime) < BATCH:
            await runtime.work.wait(seen, idle_s=POLL_INTERVAL_S)


async def reset_password(
    session: AsyncSession, ctx: AuthContext, *, token: str, password: str, client: ClientInfo
) -> None:
    """Set a new password with a reset link's token. The link then stops working, every session
    ends, every API key is revoked and any pending email change is cancelled: whoever held the
    account before the reset holds nothing of it after. Two-factor authentication stays on."""
    now = ctx.clock.now()
    row = await links.reset_token_for_update(session, tokens.sha256_hex(token))
    if row is None or row.used_at is not None or row.expires_at <= now:
        raise errors.InvalidResetLink()
    user = await repository.get_user_for_update(session, row.user_id)
    if user is None or not user.is_active:
        raise errors.InvalidResetLink()
    accounts.check_password_policy(
        password, username=user.username, email=user.email, field="password"
    )
    user.password_hash = await ctx.passwords.hash(password)
    logins.clear_failures(user)
    if user.email_verified_at is None and row.email.lower() == user.email.lower():
        user.email_verified_at = now  # the link reached the address
    await links.use_up_reset_tokens(session, user_id=user.id, now=now)
    await links.cancel_email_changes(session, user_id=user.id, now=now)
    await sessions.end_other_sessions(
        session, ctx, user_id=user.id, keep=None, reason="password_reset"
    )
    await api_keys.revoke_all_api_keys(session, ctx, user_id=user.id)
    await emit(
        session,
        PasswordChanged(
            user_id=user.id, username=user.username, reason="reset", ip_address=client.ip_address
        ),
        subject=user.id,
    )
    await session.flush()
    log.info("auth.password.reset", user_id=str(user.id))
