"""Webhook use cases. They mutate and flush; they never commit."""

from __future__ import annotations

import asyncio
import base64
import binascii
import ipaddress
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from fnmatch import fnmatchcase
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

import runyard.shared.contracts  # noqa: F401  (registers every contract)
from runyard.shared.contracts import all_contracts
from runyard.shared.db import new_id
from runyard.shared.events import CloudEvent, EventPayload
from runyard.shared.http import ProblemError
from runyard.shared.identity import Principal
from runyard.shared.logging import get_logger
from runyard.webhooks import repository
from runyard.webhooks.config import Settings
from runyard.webhooks.delivery import AttemptResult, retry_delay
from runyard.webhooks.models import WebhookConfiguration, WebhookLog
from runyard.webhooks.schemas import WebhookCreate
from runyard.webhooks.signing import SecretBox, generate_secret

log = get_logger(__name__)

SOURCE = "/runyard/webhooks"
#: Event types that never reach subscribers through fan-out.
PRIVATE_EVENT_TYPES = frozenset({"webhook.test"})
DNS_TIMEOUT_S = 5.0


def public_event_types() -> list[str]:
    return sorted({t for t, _v in all_contracts() if t not in PRIVATE_EVENT_TYPES})


def event_matches(patterns: Sequence[str], event_type: str) -> bool:
    """Shell-style match on dotted names: exact types, ``experiment.*`` or ``*``."""
    return any(fnmatchcase(event_type, pattern) for pattern in patterns)


def _invalid(field: str | int, message: str, *loc: str | int) -> ProblemError:
    return ProblemError(
        422,
        "Validation failed",
        message,
        errors=[{"loc": ["body", field, *loc], "msg": message, "type": "value_error"}],
    )


def check_event_patterns(patterns: Sequence[str]) -> None:
    known = public_event_types()
    for index, pattern in enumerate(patterns):
        if not any(fnmatchcase(t, pattern) for t in known):
            raise _invalid("enabled_events", f"{pattern!r} matches no known event type.", index)


async def _resolve(host: str, port: int) -> set[str]:
    loop = asyncio.get_running_loop()
    infos = await asyncio.wait_for(
        loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout=DNS_TIMEOUT_S
    )
    return {str(info[4][0]) for info in infos}


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global


async def check_target_url(url: str, *, allow_private: bool) -> None:
    """http(s) only; unless private targets are allowed (dev/test), https to public hosts only.

    Skeleton check at save time; resolving again at connect time (DNS rebinding) comes later.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise _invalid("url", f"Not a valid URL: {exc}.") from exc
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise _invalid("url", "The URL must use http or https.")
    host = parts.hostname
    if not host:
        raise _invalid("url", "The URL has no host.")
    if allow_private:
        return
    if scheme != "https":
        raise _invalid("url", "Only https URLs are allowed.")
    try:
        addresses = await _resolve(host, port or 443)
    except (OSError, TimeoutError) as exc:
        raise _invalid("url", f"The host {host!r} does not resolve.") from exc
    if not addresses or not all(_is_public(a) for a in addresses):
        raise _invalid("url", f"The host {host!r} resolves to a non-public address.")


async def create_webhook(
    session: AsyncSession, *, principal: Principal, data: WebhookCreate, settings: Settings
) -> tuple[WebhookConfiguration, str]:
    """Returns the configuration and its signing secret (the only time it is shown)."""
    check_event_patterns(data.enabled_events)
    await check_target_url(data.url, allow_private=settings.allow_private_targets)
    secret = generate_secret()
    webhook = WebhookConfiguration(
        id=new_id(),
        owner_id=principal.user_id,
        name=data.name,
        provider_type=data.provider_type,
        url=data.url,
        secret_encrypted=SecretBox(settings.secret_encryption_key).encrypt(secret),
        enabled_events=list(dict.fromkeys(data.enabled_events)),
        description=data.description,
        settings=data.settings,
        is_active=True,
        consecutive_failures=0,
    )
    try:
        async with session.begin_nested():
            session.add(webhook)
            await session.flush()
    except IntegrityError as exc:
        raise ProblemError(409, "Conflict", "You already have a webhook for this URL.") from exc
    log.info("webhooks.configuration.created", webhook_id=str(webhook.id))
    return webhook, secret


async def get_owned_webhook(
    session: AsyncSession, *, principal: Principal, webhook_id: uuid.UUID
) -> WebhookConfiguration:
    webhook = await repository.get_webhook(session, webhook_id)
    if webhook is None or webhook.owner_id != principal.user_id:
        raise ProblemError(404, "Not Found", "No such webhook.")
    return webhook


def encode_cursor(at: datetime, row_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(f"{at.isoformat()}|{row_id}".encode()).decode()


def decode_cursor(cursor: str | None) -> repository.Keyset | None:
    if cursor is None:
        return None
    try:
        at, _, row_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        return datetime.fromisoformat(at), uuid.UUID(row_id)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise ProblemError(422, "Validation failed", "Invalid cursor.") from exc


async def list_webhooks(
    session: AsyncSession, *, principal: Principal, limit: int, cursor: str | None
) -> tuple[Sequence[WebhookConfiguration], str | None]:
    rows = await repository.list_webhooks(
        session, owner_id=principal.user_id, limit=limit, after=decode_cursor(cursor)
    )
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], encode_cursor(last.created_at, last.id)


async def delete_webhook(
    session: AsyncSession, *, principal: Principal, webhook_id: uuid.UUID
) -> None:
    webhook = await get_owned_webhook(session, principal=principal, webhook_id=webhook_id)
    await repository.delete_webhook(session, webhook.id)
    log.info("webhooks.configuration.deleted", webhook_id=str(webhook.id))


async def list_delivery_attempts(
    session: AsyncSession,
    *,
    principal: Principal,
    webhook_id: uuid.UUID,
    limit: int,
    cursor: str | None,
) -> tuple[Sequence[WebhookLog], str | None]:
    webhook = await get_owned_webhook(session, principal=principal, webhook_id=webhook_id)
    rows = await repository.list_attempts(
        session, webhook_id=webhook.id, limit=limit, after=decode_cursor(cursor)
    )
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], encode_cursor(last.sent_at, last.id)


def event_owner(payload: EventPayload) -> uuid.UUID | None:
    owner = getattr(payload, "owner_id", None) or getattr(payload, "user_id", None)
    if owner is None:
        return None
    return owner if isinstance(owner, uuid.UUID) else uuid.UUID(str(owner))


async def enqueue_deliveries(
    session: AsyncSession, *, owner_id: uuid.UUID, event: CloudEvent
) -> int:
    """One pending delivery per active, matching endpoint of ``owner_id``; idempotent per
    (endpoint, event id). Returns how many were new."""
    webhooks = await repository.active_webhooks_of(session, owner_id)
    document = event.model_dump(mode="json", exclude_none=True)
    rows: list[dict[str, Any]] = [
        {
            "id": new_id(),
            "webhook_id": webhook.id,
            "event_id": event.id,
            "event_type": event.type,
            "payload": document,
            "status": "pending",
            "attempt_count": 0,
        }
        for webhook in webhooks
        if event_matches(webhook.enabled_events, event.type)
    ]
    return await repository.insert_deliveries(session, rows)


@dataclass(frozen=True)
class ClaimedDelivery:
    delivery_id: uuid.UUID
    webhook_id: uuid.UUID
    owner_id: uuid.UUID
    event_id: str
    event_type: str
    payload: dict[str, Any]
    attempt_number: int
    url: str
    provider_type: str
    secret_encrypted: str


async def claim_due_deliveries(
    session: AsyncSession, *, limit: int, lease: timedelta
) -> list[ClaimedDelivery]:
    claimed = await repository.claim_due_deliveries(session, limit=limit, lease=lease)
    return [
        ClaimedDelivery(
            delivery_id=d.id,
            webhook_id=c.id,
            owner_id=c.owner_id,
            event_id=d.event_id,
            event_type=d.event_type,
            payload=d.payload,
            attempt_number=d.attempt_count + 1,
            url=c.url,
            provider_type=c.provider_type,
            secret_encrypted=c.secret_encrypted,
        )
        for d, c in claimed
    ]


async def record_attempt(
    session: AsyncSession, *, job: ClaimedDelivery, result: AttemptResult
) -> None:
    """Log the attempt and settle the delivery: succeeded, retry later, or failed for good."""
    delivery = await repository.get_delivery_for_update(session, job.delivery_id)
    if delivery is None:
        log.info("webhooks.delivery.gone", delivery_id=str(job.delivery_id))
        return
    session.add(
        WebhookLog(
            id=new_id(),
            webhook_id=job.webhook_id,
            delivery_id=job.delivery_id,
            owner_id=job.owner_id,
            event_id=job.event_id,
            event_type=job.event_type,
            provider_type=job.provider_type,
            url=job.url,
            attempt_number=job.attempt_number,
            status="success" if result.succeeded else "failed",
            response_status_code=result.status_code,
            response_body=result.response_body,
            error_message=result.error,
            duration_ms=result.duration_ms,
            trigger_type="event",
        )
    )
    if delivery.status != "pending":
        return
    retry_in = None if result.succeeded else retry_delay(job.attempt_number)
    status = "succeeded" if result.succeeded else ("pending" if retry_in else "failed")
    await repository.settle_delivery(
        session,
        job.delivery_id,
        status=status,
        attempt_count=max(delivery.attempt_count, job.attempt_number),
        status_code=result.status_code,
        retry_in=retry_in,
    )
    await repository.record_endpoint_result(
        session, job.webhook_id, success=result.succeeded, error=result.error
    )
    log.info(
        "webhooks.delivery.attempted",
        webhook_id=str(job.webhook_id),
        delivery_id=str(job.delivery_id),
        event_type=job.event_type,
        attempt=job.attempt_number,
        status_code=result.status_code,
        outcome=status,
    )
