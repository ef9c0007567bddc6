"""An owner's endpoints: create, read, change, delete, rotate the signing secret, enable; and
the automatic disabling after the answers the delivery rules name. Use cases mutate and flush;
they never commit."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from fnmatch import fnmatchcase
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from runyard.shared.contracts.webhooks import WebhookEndpointDisabled
from runyard.shared.db import new_id, utcnow
from runyard.shared.identity import Principal
from runyard.shared.logging import get_logger
from runyard.shared.outbox import emit
from runyard.shared.pagination import cut, decode_cursor
from runyard.webhooks import metrics, repository
from runyard.webhooks.config import Settings
from runyard.webhooks.errors import InvalidField, WebhookNotFound, WebhookUrlTaken
from runyard.webhooks.fanout import public_event_types
from runyard.webhooks.models import WebhookConfiguration
from runyard.webhooks.schemas import WebhookCreate, WebhookSettings, WebhookUpdate
from runyard.webhooks.signing import SecretBox, generate_secret
from runyard.webhooks.ssrf import Lookup, TargetRefused, vet

log = get_logger(__name__)

#: The cursor kind of the endpoints list.
WEBHOOKS_LIST = "webhooks"


def check_event_patterns(patterns: Sequence[str]) -> None:
    known = public_event_types()
    for index, pattern in enumerate(patterns):
        if not any(fnmatchcase(t, pattern) for t in known):
            raise InvalidField("enabled_events", f"{pattern!r} matches no known event type.", index)


async def check_target_url(url: str, *, settings: Settings, lookup: Lookup) -> None:
    """The save-time SSRF check (the delivery client repeats it on every connection).

    With private targets allowed (dev/test) only the URL's shape is checked: nothing resolves.
    """
    policy = settings.target_policy()
    try:
        if policy.allow_private:
            policy.check_url(url)
        else:
            await vet(url, policy, lookup)
    except TargetRefused as exc:
        raise InvalidField("url", f"This URL cannot receive webhooks: {exc}.") from exc


def stored_settings(value: WebhookSettings) -> dict[str, Any]:
    return value.model_dump(mode="json", exclude_none=True)


async def create_webhook(
    session: AsyncSession,
    *,
    principal: Principal,
    data: WebhookCreate,
    settings: Settings,
    lookup: Lookup,
) -> tuple[WebhookConfiguration, str]:
    """Returns the configuration and its signing secret (the only time it is shown)."""
    check_event_patterns(data.enabled_events)
    await check_target_url(data.url, settings=settings, lookup=lookup)
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
        settings=stored_settings(data.settings),
        is_active=True,
        consecutive_failures=0,
    )
    await _flush_unique(session, webhook)
    log.info("webhooks.configuration.created", webhook_id=str(webhook.id))
    return webhook, secret


async def _flush_unique(session: AsyncSession, webhook: WebhookConfiguration) -> None:
    try:
        async with session.begin_nested():
            session.add(webhook)
            await session.flush()
    except IntegrityError as exc:
        raise WebhookUrlTaken() from exc


async def get_owned_webhook(
    session: AsyncSession, *, principal: Principal, webhook_id: uuid.UUID, for_update: bool = False
) -> WebhookConfiguration:
    if for_update:
        webhook = await repository.get_webhook_for_update(session, webhook_id)
    else:
        webhook = await repository.get_webhook(session, webhook_id)
    if webhook is None or webhook.owner_id != principal.user_id:
        raise WebhookNotFound()
    return webhook


async def list_webhooks(
    session: AsyncSession, *, principal: Principal, limit: int, cursor: str | None
) -> tuple[list[WebhookConfiguration], str | None]:
    after = decode_cursor(cursor, WEBHOOKS_LIST, datetime, uuid.UUID)
    rows = await repository.list_webhooks(
        session, owner_id=principal.user_id, limit=limit, after=after
    )
    return cut(rows, limit, WEBHOOKS_LIST, lambda r: (r.created_at, r.id))


async def delete_webhook(
    session: AsyncSession, *, principal: Principal, webhook_id: uuid.UUID
) -> None:
    webhook = await get_owned_webhook(session, principal=principal, webhook_id=webhook_id)
    await repository.delete_webhook(session, webhook.id)
    log.info("webhooks.configuration.deleted", webhook_id=str(webhook.id))


def _reactivate(webhook: WebhookConfiguration) -> None:
    webhook.is_active = True
    webhook.consecutive_failures = 0
    webhook.failing_since = None
    webhook.disabled_at = None
    webhook.disabled_reason = None
    webhook.next_send_at = None


async def update_webhook(
    session: AsyncSession,
    *,
    principal: Principal,
    webhook_id: uuid.UUID,
    data: WebhookUpdate,
    settings: Settings,
    lookup: Lookup,
) -> WebhookConfiguration:
    webhook = await get_owned_webhook(
        session, principal=principal, webhook_id=webhook_id, for_update=True
    )
    sent = data.model_fields_set
    for required in ("name", "provider_type", "url", "enabled_events", "settings", "is_active"):
        if required in sent and getattr(data, required) is None:
            raise InvalidField(required, f"{required} may not be null.")
    if data.url is not None and data.url != webhook.url:
        await check_target_url(data.url, settings=settings, lookup=lookup)
        webhook.url = data.url
    if data.enabled_events is not None:
        check_event_patterns(data.enabled_events)
        webhook.enabled_events = list(dict.fromkeys(data.enabled_events))
    if data.name is not None:
        webhook.name = data.name
    if data.provider_type is not None:
        webhook.provider_type = data.provider_type
    if "description" in sent:
        webhook.description = data.description
    if data.settings is not None:
        webhook.settings = stored_settings(data.settings)
    if data.is_active is True and not webhook.is_active:
        _reactivate(webhook)
    elif data.is_active is False and webhook.is_active:
        webhook.is_active = False
        webhook.disabled_at = utcnow()
        webhook.disabled_reason = "manual"
    webhook.updated_at = utcnow()
    await _flush_unique(session, webhook)
    log.info("webhooks.configuration.updated", webhook_id=str(webhook.id), fields=sorted(sent))
    return webhook


async def rotate_secret(
    session: AsyncSession, *, principal: Principal, webhook_id: uuid.UUID, settings: Settings
) -> tuple[WebhookConfiguration, str]:
    """A new secret signs from now on; the one it replaces keeps signing alongside it for
    ``secret_rotation_overlap_hours`` (a second signature in ``webhook-signature``). A secret
    older than that (from an earlier rotation) stops at once."""
    webhook = await get_owned_webhook(
        session, principal=principal, webhook_id=webhook_id, for_update=True
    )
    secret = generate_secret()
    webhook.previous_secret_encrypted = webhook.secret_encrypted
    webhook.previous_secret_expires_at = utcnow() + timedelta(
        hours=settings.secret_rotation_overlap_hours
    )
    webhook.secret_encrypted = SecretBox(settings.secret_encryption_key).encrypt(secret)
    webhook.updated_at = utcnow()
    await session.flush()
    log.info("webhooks.secret.rotated", webhook_id=str(webhook.id))
    return webhook, secret


async def enable_webhook(
    session: AsyncSession, *, principal: Principal, webhook_id: uuid.UUID
) -> WebhookConfiguration:
    """Switch the endpoint on again with a clean failure record. Pending deliveries that fell
    due while it was off go out at once."""
    webhook = await get_owned_webhook(
        session, principal=principal, webhook_id=webhook_id, for_update=True
    )
    _reactivate(webhook)
    webhook.updated_at = utcnow()
    await session.flush()
    log.info("webhooks.endpoint.enabled", webhook_id=str(webhook.id))
    return webhook


def display_url(url: str) -> str:
    """The URL without credentials, query or fragment, and with a Slack hook's token masked:
    for events and emails (Slack and Teams URLs are bearer secrets)."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if ":" in netloc:
        netloc = f"[{netloc}]"
    if parts.port:
        netloc += f":{parts.port}"
    path = parts.path
    if (parts.hostname or "").endswith("hooks.slack.com"):
        segments = path.split("/")
        if len(segments) > 3:
            segments[-1] = "***"
        path = "/".join(segments)
    return urlunsplit((parts.scheme, netloc, path, "", ""))


async def disable_endpoint(session: AsyncSession, webhook_id: uuid.UUID, *, reason: str) -> None:
    """Switch the endpoint off and tell its owner (``webhook.endpoint_disabled``, same
    transaction). Deliveries already owed stay pending until it is enabled again."""
    webhook = await repository.disable_endpoint(session, webhook_id, reason=reason)
    if webhook is None:
        return
    await emit(
        session,
        WebhookEndpointDisabled(
            webhook_id=webhook.id,
            owner_id=webhook.owner_id,
            name=webhook.name,
            url=display_url(webhook.url),
            reason=reason,
            consecutive_failures=webhook.consecutive_failures,
        ),
        subject=webhook.id,
    )
    metrics.DISABLED.labels(reason).inc()
    log.warning(
        "webhooks.endpoint.disabled",
        webhook_id=str(webhook.id),
        reason=reason,
        consecutive_failures=webhook.consecutive_failures,
    )
