"""Email ownership: a verification link for a new account's address, and for the new address of
an email change, which takes effect only when its link is followed (then the old address is
told, by ``email.verified``)."""

from __future__ import annotations

import secrets
import uuid
from datetime import timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from runyard.auth import errors, events, repository, tokens
from runyard.auth.context import AuthContext
from runyard.auth.models import EmailVerification, User
from runyard.auth.recovery import repository as links
from runyard.shared.contracts.auth import EmailVerificationRequested, EmailVerified
from runyard.shared.db import new_id
from runyard.shared.logging import get_logger
from runyard.shared.outbox import emit

log = get_logger(__name__)

#: A new sign-up link at most this often per account.
RESEND_INTERVAL_S = 60


async def _send_link(
    session: AsyncSession, ctx: AuthContext, *, user: User, email: str, purpose: str
) -> None:
    now = ctx.clock.now()
    payload = EmailVerificationRequested(
        user_id=user.id,
        username=user.username,
        email=email,
        link_id=tokens.new_link_id(),
        expires_at=now + timedelta(seconds=ctx.settings.email_verification_ttl_seconds),
        purpose=purpose,
    )
    token = payload.link_token(ctx.settings.email_link_secret.get_secret_value())
    session.add(
        EmailVerification(
            id=new_id(),
            user_id=user.id,
            email=email,
            purpose=purpose,
            token_hash=tokens.sha256_hex(token),
            created_at=now,
            expires_at=payload.expires_at,
        )
    )
    await emit(session, payload, subject=user.id)


async def send_signup_link(session: AsyncSession, ctx: AuthContext, user: User) -> None:
    await _send_link(session, ctx, user=user, email=user.email, purpose="signup")


async def resend_signup_link(session: AsyncSession, ctx: AuthContext, *, user: User) -> None:
    if user.email_verified_at is not None:
        raise errors.EmailAlreadyVerified()
    last = await links.last_verification_sent_at(session, user_id=user.id, purpose="signup")
    now = ctx.clock.now()
    if last is not None and (wait := RESEND_INTERVAL_S - (now - last).total_seconds()) > 0:
        raise errors.VerificationRecentlySent(max(1, int(wait + 0.999)))
    await send_signup_link(session, ctx, user)
    await session.flush()


async def request_email_change(
    session: AsyncSession, ctx: AuthContext, *, user: User, email: str
) -> None:
    """Start changing the address to ``email``: a link goes to it, the account keeps its address
    until the link is followed. An address another account holds gets the same answer and a
    pending change that can never complete (no link is sent), so the answer says nothing about
    who else is registered."""
    now = ctx.clock.now()
    await links.cancel_email_changes(session, user_id=user.id, now=now)
    if await repository.email_taken(session, email=email, except_user=user.id):
        session.add(
            EmailVerification(
                id=new_id(),
                user_id=user.id,
                email=email,
                purpose="change",
                token_hash=tokens.sha256_hex(secrets.token_urlsafe(32)),
                created_at=now,
                expires_at=now + timedelta(seconds=ctx.settings.email_verification_ttl_seconds),
            )
        )
        log.info("auth.email_change.address_taken", user_id=str(user.id))
        return
    await _send_link(session, ctx, user=user, email=email, purpose="change")
    log.info("auth.email_change.requested", user_id=str(user.id))


async def pending_email(session: AsyncSession, ctx: AuthContext, user_id: uuid.UUID) -> str | None:
    row = await links.pending_email_change(session, user_id=user_id, now=ctx.clock.now())
    return row.email if row is not None else None


async def verify_email(session: AsyncSession, ctx: AuthContext, *, token: str) -> None:
    """Follow a verification link: the address is verified, and for an email change the account
    takes the new address now (``user.updated``) and the old one is told (``email.verified``)."""
    now = ctx.clock.now()
    row = await links.verification_for_update(session, tokens.sha256_hex(token))
    if row is None or row.used_at is not None or row.expires_at <= now:
        raise errors.InvalidVerificationLink()
    user = await repository.get_user_for_update(session, row.user_id)
    if user is None or not user.is_active:
        raise errors.InvalidVerificationLink()
    row.used_at = now
    if row.purpose == "signup":
        if user.email.lower() != row.email.lower():  # the account has another address by now
            raise errors.InvalidVerificationLink()
        if user.email_verified_at is None:
            user.email_verified_at = now
            await emit(
                session,
                EmailVerified(user_id=user.id, username=user.username, email=user.email),
                subject=user.id,
            )
        await session.flush()
        log.info("auth.email.verified", user_id=str(user.id))
        return
    if await repository.email_taken(session, email=row.email, except_user=user.id):
        raise errors.EmailTaken()
    previous = user.email
    user.email = row.email
    user.email_verified_at = now
    await links.cancel_email_changes(session, user_id=user.id, now=now)
    await events.user_updated(session, user)
    await emit(
        session,
        EmailVerified(
            user_id=user.id, username=user.username, email=user.email, previous_email=previous
        ),
        subject=user.id,
    )
    try:
        await session.flush()
    except IntegrityError as exc:  # a concurrent registration took the address first
        raise errors.EmailTaken() from exc
    log.info("auth.email.changed", user_id=str(user.id))
