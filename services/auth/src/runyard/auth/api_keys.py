"""API keys: create (shown once), list, revoke, usage; verification for the gateway."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from runyard.auth import accounts, errors, repository, stepup, tokens
from runyard.auth.callers import Caller
from runyard.auth.context import AuthContext
from runyard.auth.models import ApiKey, ApiUsage, User
from runyard.auth.schemas import CreateApiKeyRequest
from runyard.shared.contracts.auth import ApiKeyCreated, ApiKeyRevoked
from runyard.shared.contracts.gateway import ApiKeyUsed
from runyard.shared.db import new_id
from runyard.shared.events import CloudEvent
from runyard.shared.identity import Principal
from runyard.shared.logging import get_logger
from runyard.shared.outbox import emit
from runyard.shared.pagination import cut, decode_cursor

log = get_logger(__name__)

READ_SCOPES = frozenset({"experiments:read", "webhooks:read", "notifications:read"})
WRITE_SCOPES = frozenset({"experiments:write", "webhooks:write", "notifications:write"})
ADMIN_SCOPE = "admin"
KEYS_PAGE_KIND = "api_keys"
USAGE_PAGE_KIND = "api_usage"


def scopes_allowed_for(role: str) -> frozenset[str]:
    """A key can never do more than its owner: viewers read, users read and write, admins all."""
    if role == "admin":
        return READ_SCOPES | WRITE_SCOPES | {ADMIN_SCOPE}
    if role == "user":
        return READ_SCOPES | WRITE_SCOPES
    return READ_SCOPES


async def create_api_key(
    session: AsyncSession, ctx: AuthContext, *, caller: Caller, data: CreateApiKeyRequest
) -> tuple[ApiKey, str] | errors.Refusal:
    """A new key, once the caller proved who they are (step-up: the current password, or a
    code with 2FA on): a key outlives the access token, so a stolen token must not mint one."""
    user = await accounts.active_user_for_update(session, caller.user_id)
    denied = sorted(set(data.scopes) - scopes_allowed_for(user.role))
    if denied:
        raise errors.ScopesNotGrantable(user.role, denied)
    now = ctx.clock.now()
    if data.expires_at is not None and (data.expires_at.tzinfo is None or data.expires_at <= now):
        raise errors.ExpiryInThePast()
    refusal = await stepup.confirm_identity(
        session,
        ctx,
        user=user,
        caller=caller,
        current_password=data.current_password,
        code=data.code,
    )
    if refusal is not None:
        return refusal
    key = tokens.new_api_key()
    row = ApiKey(
        id=new_id(),
        user_id=user.id,
        key_hash=tokens.sha256_hex(key),
        name=data.name,
        prefix=tokens.api_key_display_prefix(key),
        scopes=list(data.scopes),
        rate_limit=data.rate_limit,
        expires_at=data.expires_at,
        is_active=True,
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    await emit(
        session,
        ApiKeyCreated(
            key_id=row.id,
            user_id=user.id,
            name=row.name,
            prefix=row.prefix,
            scopes=row.scopes,
            expires_at=row.expires_at,
            rate_limit=row.rate_limit,
        ),
        subject=row.id,
    )
    await session.flush()
    log.info("auth.api_key.created", key_id=str(row.id), user_id=str(user.id), prefix=row.prefix)
    return row, key


async def list_api_keys(
    session: AsyncSession, *, user_id: uuid.UUID, limit: int, cursor: str | None
) -> tuple[Sequence[ApiKey], str | None]:
    rows = await repository.list_api_keys(
        session,
        user_id=user_id,
        limit=limit,
        after=decode_cursor(cursor, KEYS_PAGE_KIND, datetime, uuid.UUID),
    )
    return cut(rows, limit, KEYS_PAGE_KIND, lambda key: (key.created_at, key.id))


async def _visible_key(
    session: AsyncSession, *, principal: Principal, key_id: uuid.UUID, for_update: bool = False
) -> ApiKey:
    """The caller's key (admins: anyone's); 404 otherwise, so ids of others' keys leak nothing."""
    key = await (
        repository.get_api_key_for_update(session, key_id)
        if for_update
        else repository.get_api_key(session, key_id)
    )
    if key is None or (key.user_id != principal.user_id and not principal.is_admin):
        raise errors.NoSuchApiKey()
    return key


async def revoke_api_key(
    session: AsyncSession, ctx: AuthContext, *, principal: Principal, key_id: uuid.UUID
) -> None:
    key = await _visible_key(session, principal=principal, key_id=key_id, for_update=True)
    if not key.is_active:
        return
    key.is_active = False
    key.revoked_at = ctx.clock.now()
    await emit(
        session,
        ApiKeyRevoked(key_id=key.id, user_id=key.user_id, prefix=key.prefix),
        subject=key.id,
    )
    await session.flush()
    log.info("auth.api_key.revoked", key_id=str(key.id), by=str(principal.user_id))


async def revoke_all_api_keys(
    session: AsyncSession, ctx: AuthContext, *, user_id: uuid.UUID
) -> int:
    """Revoke every active key of the user (``api_key.revoked`` for each); how many."""
    now = ctx.clock.now()
    keys = await repository.active_api_keys_for_update(session, user_id)
    for key in keys:
        key.is_active = False
        key.revoked_at = now
        await emit(
            session,
            ApiKeyRevoked(key_id=key.id, user_id=key.user_id, prefix=key.prefix),
            subject=key.id,
        )
    if keys:
        log.info("auth.api_keys.revoked_all", user_id=str(user_id), count=len(keys))
    return len(keys)


async def api_key_usage(
    session: AsyncSession,
    *,
    principal: Principal,
    key_id: uuid.UUID,
    limit: int,
    cursor: str | None,
) -> tuple[ApiKey, int, Sequence[ApiUsage], str | None]:
    key = await _visible_key(session, principal=principal, key_id=key_id)
    total = await repository.api_usage_count(session, key.id)
    rows = await repository.list_api_usage(
        session,
        key_id=key.id,
        limit=limit,
        after=decode_cursor(cursor, USAGE_PAGE_KIND, datetime, int),
    )
    page, next_cursor = cut(rows, limit, USAGE_PAGE_KIND, lambda used: (used.timestamp, used.id))
    return key, total, page, next_cursor


async def verify_api_key(
    session: AsyncSession, ctx: AuthContext, *, key: str
) -> tuple[ApiKey, User, list[str]] | None:
    """The key, its owner and its effective scopes if it may be used now; else None."""
    if not tokens.is_well_formed_api_key(key):
        return None
    found = await repository.api_key_with_owner(session, tokens.sha256_hex(key))
    if found is None:
        return None
    row, user = found
    now = ctx.clock.now()
    if not row.is_active or not user.is_active:
        return None
    if row.expires_at is not None and row.expires_at <= now:
        return None
    allowed = scopes_allowed_for(user.role)
    return row, user, [scope for scope in row.scopes if scope in allowed]


async def record_usage(session: AsyncSession, event: CloudEvent, payload: ApiKeyUsed) -> None:
    """``api_key.used`` handler: one ``api_usage`` row, and the key's ``last_used_at``."""
    used_at: datetime = event.time
    recorded = await repository.record_api_usage(
        session,
        key_id=payload.key_id,
        endpoint=payload.route[:500],
        method=payload.method[:10],
        status_code=payload.status,
        response_time_ms=payload.latency_ms,
        ip_address=payload.ip_address[:45] if payload.ip_address else None,
        used_at=used_at,
    )
    if not recorded:
        log.warning("auth.api_usage.unknown_key", key_id=str(payload.key_id), event_id=event.id)
