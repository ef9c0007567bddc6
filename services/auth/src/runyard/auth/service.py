"""Auth use cases. They mutate, write outbox events and flush; they never commit."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from runyard.auth import repository, security
from runyard.auth.models import LoginHistory, User
from runyard.auth.schemas import RegisterRequest
from runyard.shared.contracts.auth import LoginFailed, LoginSucceeded, UserRegistered
from runyard.shared.db import new_id, utcnow
from runyard.shared.events import make_event
from runyard.shared.http import ProblemError
from runyard.shared.logging import get_logger
from runyard.shared.outbox import add_event

log = get_logger(__name__)

SOURCE = "/runyard/auth"


@dataclass(frozen=True)
class ClientInfo:
    ip_address: str | None
    user_agent: str | None


async def register_user(session: AsyncSession, *, data: RegisterRequest) -> User:
    password_hash = await security.hash_password(data.password)
    user = await repository.insert_user_unless_taken(
        session,
        id=new_id(),
        username=data.username,
        email=data.email,
        password_hash=password_hash,
        role="user",
        is_active=True,
        timezone="UTC",
        failed_login_attempts=0,
        totp_enabled=False,
        version=1,
    )
    if user is None:
        fields = await repository.taken_fields(session, username=data.username, email=data.email)
        raise ProblemError(
            409,
            "Conflict",
            f"{' and '.join(fields).capitalize() or 'Username or email'} already taken.",
            fields=fields,
        )
    await add_event(
        session,
        make_event(
            UserRegistered(
                user_id=user.id,
                username=user.username,
                email=user.email,
                role=user.role,
                is_active=user.is_active,
                timezone=user.timezone,
                full_name=user.full_name,
            ),
            source=SOURCE,
            subject=user.id,
            sequence=user.version,
        ),
    )
    log.info("auth.user.registered", user_id=str(user.id))
    return user


@dataclass(frozen=True)
class LoginAccepted:
    user: User
    token: security.AccessToken


@dataclass(frozen=True)
class LoginRejected:
    reason: str


async def log_in(
    session: AsyncSession,
    *,
    login: str,
    password: str,
    client: ClientInfo,
    signing_key: security.SigningKey,
    token_ttl_seconds: int,
) -> LoginAccepted | LoginRejected:
    """Check the credentials and record the attempt (history row + event) either way.

    A rejection is returned, not raised, so the caller's transaction still commits the record.
    """
    user = await repository.get_user_by_login_for_update(session, login)
    if user is None:
        await security.verify_against_dummy(password)
        return await _reject(session, login=login, user=None, reason="unknown_user", client=client)
    if not await security.verify_password(user.password_hash, password):
        user.failed_login_attempts += 1
        return await _reject(
            session, login=login, user=user, reason="invalid_password", client=client
        )
    if not user.is_active:
        return await _reject(session, login=login, user=user, reason="inactive_user", client=client)

    now = utcnow()
    if security.needs_rehash(user.password_hash):
        user.password_hash = await security.hash_password(password)
    user.failed_login_attempts = 0
    user.last_login_at = now
    token = security.issue_access_token(
        signing_key,
        user_id=user.id,
        username=user.username,
        role=user.role,
        session_id=uuid.uuid4(),
        now=now,
        ttl_seconds=token_ttl_seconds,
    )
    _record_attempt(session, login=login, user=user, reason=None, client=client)
    await add_event(
        session,
        make_event(
            LoginSucceeded(
                user_id=user.id,
                username=user.username,
                session_id=token.session_id,
                ip_address=client.ip_address,
                user_agent=client.user_agent,
            ),
            source=SOURCE,
            subject=user.id,
        ),
    )
    await session.flush()
    log.info("auth.login.succeeded", user_id=str(user.id))
    return LoginAccepted(user=user, token=token)


async def _reject(
    session: AsyncSession, *, login: str, user: User | None, reason: str, client: ClientInfo
) -> LoginRejected:
    _record_attempt(session, login=login, user=user, reason=reason, client=client)
    await add_event(
        session,
        make_event(
            LoginFailed(
                username_attempted=login,
                user_id=user.id if user else None,
                ip_address=client.ip_address,
                user_agent=client.user_agent,
                reason=reason,
                consecutive_failures=user.failed_login_attempts if user else 0,
            ),
            source=SOURCE,
            subject=user.id if user else login.lower(),
        ),
    )
    await session.flush()
    log.info("auth.login.failed", reason=reason, user_id=str(user.id) if user else None)
    return LoginRejected(reason=reason)


def _record_attempt(
    session: AsyncSession,
    *,
    login: str,
    user: User | None,
    reason: str | None,
    client: ClientInfo,
) -> None:
    repository.add_login_history(
        session,
        LoginHistory(
            id=new_id(),
            user_id=user.id if user else None,
            username_attempted=login,
            login_method="password",
            success=reason is None,
            failure_reason=reason,
            ip_address=client.ip_address,
            user_agent=client.user_agent,
        ),
    )


async def get_user(session: AsyncSession, *, user_id: uuid.UUID) -> User:
    user = await repository.get_user(session, user_id)
    if user is None:
        raise ProblemError(404, "Not Found", "No such user.")
    return user
