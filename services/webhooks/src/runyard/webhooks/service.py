"""Webhook use cases. They mutate and flush; they never commit (except ``send_test``, which
owns its short transactions so no database connection waits on an HTTP call)."""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from fnmatch import fnmatchcase
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import runyard.shared.contracts  # noqa: F401  (registers every contract)
from runyard.shared.contracts import all_contracts
from runyard.shared.contracts.notifications import NotificationPreferenceUpdated
from runyard.shared.contracts.webhooks import WebhookEndpointDisabled, WebhookTest
from runyard.shared.db import new_id, utcnow
from runyard.shared.events import CloudEvent, EventPayload, make_event
from runyard.shared.http import ProblemError
from runyard.shared.identity import Principal
from runyard.shared.logging import get_logger
from runyard.shared.outbox import add_event
from runyard.webhooks import metrics, repository
from runyard.webhooks.config import Settings
from runyard.webhooks.delivery import (
    AttemptResult,
    build_request,
    gone_reason,
    next_retry,
    post,
)
from runyard.webhooks.models import (
    NotificationPreference,
    WebhookConfiguration,
    WebhookDelivery,
    WebhookLog,
)
from runyard.webhooks.schemas import WebhookCreate, WebhookSettings, WebhookUpdate
from runyard.webhooks.signing import SecretBox, generate_secret
from runyard.webhooks.ssrf import Lookup, TargetPolicy, TargetRefused, vet

log = get_logger(__name__)

SOURCE = "/runyard/webhooks"
#: Event types that never reach subscribers through fan-out.
PRIVATE_EVENT_TYPES = frozenset({"webhook.test"})

Row = TypeVar("Row")


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


def target_policy(settings: Settings) -> TargetPolicy:
    return TargetPolicy(
        allow_private=settings.allow_private_targets, http_hosts=settings.http_hosts()
    )


async def check_target_url(url: str, *, settings: Settings, lookup: Lookup) -> None:
    """The save-time SSRF check (the delivery client repeats it on every connection).

    With private targets allowed (dev/test) only the URL's shape is checked: nothing resolves.
    """
    policy = target_policy(settings)
    try:
        if policy.allow_private:
            policy.check_url(url)
        else:
            await vet(url, policy, lookup)
    except TargetRefused as exc:
        raise _invalid("url", f"This URL cannot receive webhooks: {exc}.") from exc


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
        raise ProblemError(409, "Conflict", "You already have a webhook for this URL.") from exc


async def get_owned_webhook(
    session: AsyncSession, *, principal: Principal, webhook_id: uuid.UUID, for_update: bool = False
) -> WebhookConfiguration:
    if for_update:
        webhook = await repository.get_webhook_for_update(session, webhook_id)
    else:
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


def _page(rows: Sequence[Row], limit: int, key: Any) -> tuple[Sequence[Row], str | None]:
    if len(rows) <= limit:
        return rows, None
    return rows[:limit], encode_cursor(*key(rows[limit - 1]))


async def list_webhooks(
    session: AsyncSession, *, principal: Principal, limit: int, cursor: str | None
) -> tuple[Sequence[WebhookConfiguration], str | None]:
    rows = await repository.list_webhooks(
        session, owner_id=principal.user_id, limit=limit, after=decode_cursor(cursor)
    )
    return _page(rows, limit, lambda r: (r.created_at, r.id))


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
            raise _invalid(required, f"{required} may not be null.")
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


# --- deliveries API --------------------------------------------------------------------------


async def list_deliveries(
    session: AsyncSession,
    *,
    principal: Principal,
    webhook_id: uuid.UUID,
    status: str | None,
    event_type: str | None,
    since: datetime | None,
    limit: int,
    cursor: str | None,
) -> tuple[Sequence[WebhookDelivery], str | None]:
    webhook = await get_owned_webhook(session, principal=principal, webhook_id=webhook_id)
    rows = await repository.list_deliveries(
        session,
        webhook_id=webhook.id,
        status=status,
        event_type=event_type,
        since=since,
        limit=limit,
        after=decode_cursor(cursor),
    )
    return _page(rows, limit, lambda r: (r.created_at, r.id))


async def get_delivery(
    session: AsyncSession, *, principal: Principal, webhook_id: uuid.UUID, delivery_id: uuid.UUID
) -> tuple[WebhookDelivery, Sequence[WebhookLog]]:
    webhook = await get_owned_webhook(session, principal=principal, webhook_id=webhook_id)
    delivery = await repository.get_delivery(
        session, webhook_id=webhook.id, delivery_id=delivery_id
    )
    if delivery is None:
        raise ProblemError(404, "Not Found", "No such delivery.")
    return delivery, await repository.attempts_of_delivery(session, delivery.id)


def _require_active(webhook: WebhookConfiguration) -> None:
    if not webhook.is_active:
        raise ProblemError(
            409,
            "Conflict",
            "The endpoint is disabled; enable it first (POST /api/v1/webhooks/{id}/enable).",
            disabled_reason=webhook.disabled_reason,
        )


async def retry_delivery(
    session: AsyncSession, *, principal: Principal, webhook_id: uuid.UUID, delivery_id: uuid.UUID
) -> WebhookDelivery:
    """Queue one delivery to go out now. A settled one (failed or succeeded) gets exactly one
    more attempt; a pending one keeps its retry schedule if this attempt fails."""
    webhook = await get_owned_webhook(session, principal=principal, webhook_id=webhook_id)
    _require_active(webhook)
    delivery = await repository.get_delivery(
        session, webhook_id=webhook.id, delivery_id=delivery_id
    )
    if delivery is None:
        raise ProblemError(404, "Not Found", "No such delivery.")
    if delivery.status != "pending":
        delivery.automatic_retries = False
    delivery.status = "pending"
    delivery.next_attempt_at = utcnow()
    delivery.trigger_type = "manual_retry"
    delivery.updated_at = utcnow()
    await session.flush()
    log.info("webhooks.delivery.retry_requested", delivery_id=str(delivery.id))
    return delivery


async def replay_failed(
    session: AsyncSession, *, principal: Principal, webhook_id: uuid.UUID, since: datetime
) -> int:
    """Queue every failed delivery created since ``since`` again (one attempt each)."""
    webhook = await get_owned_webhook(session, principal=principal, webhook_id=webhook_id)
    _require_active(webhook)
    queued = await repository.requeue_failed_since(session, webhook_id=webhook.id, since=since)
    log.info("webhooks.delivery.replayed", webhook_id=str(webhook.id), queued=queued)
    return queued


async def list_attempts(
    session: AsyncSession,
    *,
    principal: Principal,
    webhook_id: uuid.UUID,
    status: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[Sequence[WebhookLog], str | None]:
    webhook = await get_owned_webhook(session, principal=principal, webhook_id=webhook_id)
    rows = await repository.list_attempts(
        session, webhook_id=webhook.id, status=status, limit=limit, after=decode_cursor(cursor)
    )
    return _page(rows, limit, lambda r: (r.sent_at, r.id))


# --- fan-out ---------------------------------------------------------------------------------


def event_owner(payload: EventPayload) -> uuid.UUID | None:
    owner = getattr(payload, "owner_id", None) or getattr(payload, "user_id", None)
    if owner is None:
        return None
    return owner if isinstance(owner, uuid.UUID) else uuid.UUID(str(owner))


@dataclass
class _FanOutCache:
    """What fan-out read in this transaction (the consumer handles a partition's batch in one
    transaction): the owner's active endpoints and their mutes, read once per batch."""

    transaction: object
    webhooks: dict[uuid.UUID, list[WebhookConfiguration]] = field(default_factory=dict)
    preferences: dict[tuple[uuid.UUID, str], NotificationPreference | None] = field(
        default_factory=dict
    )


def _fan_out_cache(session: AsyncSession) -> _FanOutCache:
    transaction = session.sync_session.get_transaction()
    cache = session.info.get("webhooks.fan_out")
    if not isinstance(cache, _FanOutCache) or cache.transaction is not transaction:
        cache = _FanOutCache(transaction)
        session.info["webhooks.fan_out"] = cache
    return cache


def muted(provider_type: str, preference: NotificationPreference | None) -> bool:
    """Slack endpoints follow ``slack_enabled``; generic and Teams ones ``webhook_enabled``."""
    if preference is None:
        return False
    enabled = preference.slack_enabled if provider_type == "slack" else preference.webhook_enabled
    return not enabled


async def enqueue_deliveries(
    session: AsyncSession, *, owner_id: uuid.UUID, event: CloudEvent
) -> int:
    """One pending delivery per active, matching, not muted endpoint of ``owner_id``;
    idempotent per (endpoint, event id). Returns how many were new."""
    cache = _fan_out_cache(session)
    if owner_id not in cache.webhooks:
        cache.webhooks[owner_id] = list(await repository.active_webhooks_of(session, owner_id))
    webhooks = [w for w in cache.webhooks[owner_id] if event_matches(w.enabled_events, event.type)]
    if not webhooks:
        return 0
    key = (owner_id, event.type)
    if key not in cache.preferences:
        cache.preferences[key] = await repository.preference_for(session, owner_id, event.type)
    preference = cache.preferences[key]
    wanted = [w for w in webhooks if not muted(w.provider_type, preference)]
    if len(wanted) < len(webhooks):
        metrics.MUTED.inc(len(webhooks) - len(wanted))
        log.info("webhooks.fan_out.muted", skipped=len(webhooks) - len(wanted))
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
            "trigger_type": "event",
            "automatic_retries": True,
        }
        for webhook in wanted
    ]
    created = await repository.insert_deliveries(session, rows)
    metrics.ENQUEUED.inc(created)
    return created


async def record_preference(
    session: AsyncSession, *, event: CloudEvent, payload: NotificationPreferenceUpdated
) -> None:
    stored = await repository.upsert_preference(
        session,
        user_id=payload.user_id,
        event_type=payload.notification_event_type,
        webhook_enabled=payload.webhook_enabled,
        slack_enabled=payload.slack_enabled,
        event_time=event.time,
    )
    _fan_out_cache(session).preferences.pop(
        (payload.user_id, payload.notification_event_type), None
    )
    log.info(
        "webhooks.preference.recorded" if stored else "webhooks.preference.stale",
        event_type=payload.notification_event_type,
    )


# --- attempts --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClaimedDelivery:
    delivery_id: uuid.UUID | None
    webhook_id: uuid.UUID
    owner_id: uuid.UUID
    event_id: str
    event_type: str
    payload: dict[str, Any]
    attempt_number: int
    url: str
    provider_type: str
    secret_encrypted: str
    previous_secret_encrypted: str | None = None
    previous_secret_expires_at: datetime | None = None
    endpoint_settings: dict[str, Any] | None = None
    trigger_type: str = "event"
    automatic_retries: bool = True

    @classmethod
    def of(
        cls, config: WebhookConfiguration, delivery: WebhookDelivery | None = None, **extra: Any
    ) -> ClaimedDelivery:
        fields: dict[str, Any] = {
            "webhook_id": config.id,
            "owner_id": config.owner_id,
            "url": config.url,
            "provider_type": config.provider_type,
            "secret_encrypted": config.secret_encrypted,
            "previous_secret_encrypted": config.previous_secret_encrypted,
            "previous_secret_expires_at": config.previous_secret_expires_at,
            "endpoint_settings": dict(config.settings or {}),
        }
        if delivery is not None:
            fields |= {
                "delivery_id": delivery.id,
                "event_id": delivery.event_id,
                "event_type": delivery.event_type,
                "payload": delivery.payload,
                "attempt_number": delivery.attempt_count + 1,
                "trigger_type": delivery.trigger_type,
                "automatic_retries": delivery.automatic_retries,
            }
        return cls(**(fields | extra))

    def signing_secrets(self, box: SecretBox, now: datetime) -> list[str]:
        secrets_ = [box.decrypt(self.secret_encrypted)]
        if (
            self.previous_secret_encrypted
            and self.previous_secret_expires_at is not None
            and self.previous_secret_expires_at > now
        ):
            secrets_.append(box.decrypt(self.previous_secret_encrypted))
        return secrets_


async def claim_due_deliveries(
    session: AsyncSession, *, limit: int, lease: timedelta, slack_rate: float = 1.0
) -> list[ClaimedDelivery]:
    claimed = await repository.claim_due_deliveries(
        session, limit=limit, lease=lease, slack_rate=slack_rate
    )
    return [ClaimedDelivery.of(c, d) for d, c in claimed]


async def send_once(
    http: aiohttp.ClientSession, job: ClaimedDelivery, *, settings: Settings
) -> AttemptResult:
    """Render, sign and POST one attempt (no database)."""
    try:
        request = build_request(
            provider_type=job.provider_type,
            secrets=job.signing_secrets(SecretBox(settings.secret_encryption_key), utcnow()),
            event=job.payload,
            custom_headers=(job.endpoint_settings or {}).get("headers"),
            base_url=settings.public_base_url,
        )
    except Exception as exc:
        return AttemptResult(
            None, None, f"could not build the request: {type(exc).__name__}", 0, "connection_error"
        )
    result = await post(
        http,
        job.url,
        request,
        timeout_s=settings.delivery_timeout_s,
        policy=target_policy(settings),
    )
    metrics.observe_attempt(job.provider_type, job.trigger_type, result)
    return result


def _attempt_log(
    job: ClaimedDelivery, result: AttemptResult, next_attempt_at: datetime | None
) -> WebhookLog:
    return WebhookLog(
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
        trigger_type=job.trigger_type,
        sent_at=result.sent_at or utcnow(),
        next_attempt_at=next_attempt_at,
    )


def _hold_after(result: AttemptResult, settings: Settings, now: datetime) -> datetime | None:
    """After a 429 every request to the endpoint waits (at least the minimum, or Retry-After)."""
    if result.status_code != 429:
        return None
    wait = settings.throttled_retry_min_s
    if result.retry_after_s is not None:
        wait = max(wait, min(result.retry_after_s, settings.retry_after_max_s))
    return now + timedelta(seconds=wait)


Outcome = tuple[ClaimedDelivery, AttemptResult]


async def record_attempt(
    session: AsyncSession, *, job: ClaimedDelivery, result: AttemptResult, settings: Settings
) -> None:
    await record_attempts(session, [(job, result)], settings=settings)


async def record_attempts(
    session: AsyncSession, outcomes: Sequence[Outcome], *, settings: Settings
) -> None:
    """Log each attempt and settle its delivery (succeeded, retry later, or failed for good);
    count the attempts on their endpoints, in the order given, and disable an endpoint when
    the rules say so. A few statements for the whole batch, whatever its size."""
    now = utcnow()
    current = await repository.lock_deliveries(
        session, [job.delivery_id for job, _ in outcomes if job.delivery_id is not None]
    )
    attempts: list[WebhookLog] = []
    settled: list[dict[str, Any]] = []
    per_endpoint: dict[uuid.UUID, list[Outcome]] = {}
    for job, result in outcomes:
        assert job.delivery_id is not None
        state = current.get(job.delivery_id)
        if state is None:
            log.info("webhooks.delivery.gone", delivery_id=str(job.delivery_id))
            continue
        was, attempt_count = state
        retry_in = None
        if not result.succeeded and job.automatic_retries:
            retry_in = next_retry(
                job.attempt_number,
                result,
                throttled_min_s=settings.throttled_retry_min_s,
                retry_after_max_s=settings.retry_after_max_s,
            )
        next_at = None if retry_in is None else now + retry_in
        status = "succeeded" if result.succeeded else ("pending" if next_at else "failed")
        attempts.append(_attempt_log(job, result, next_at if was == "pending" else None))
        if was != "pending":
            continue
        current[job.delivery_id] = (status, max(attempt_count, job.attempt_number))
        settled.append(
            {
                "id": job.delivery_id,
                "status": status,
                "attempt_count": max(attempt_count, job.attempt_number),
                "last_status_code": result.status_code,
                "last_error": result.error,
                "last_attempt_at": now,
                "next_attempt_at": next_at,
                "trigger_type": "event",
                "updated_at": now,
            }
        )
        per_endpoint.setdefault(job.webhook_id, []).append((job, result))
        if status != "pending":
            metrics.SETTLED.labels(job.provider_type, status).inc()
        if result.succeeded:
            metrics.observe_lag(job.provider_type, job.payload.get("time"), now)
        log.info(
            "webhooks.delivery.attempted",
            webhook_id=str(job.webhook_id),
            delivery_id=str(job.delivery_id),
            event_type=job.event_type,
            attempt=job.attempt_number,
            trigger=job.trigger_type,
            status_code=result.status_code,
            outcome=result.outcome,
            delivery_status=status,
        )
    session.add_all(attempts)
    await repository.settle_deliveries(session, settled)
    for webhook_id in sorted(per_endpoint):
        await _count_on_endpoint(session, webhook_id, per_endpoint[webhook_id], settings, now)


async def _count_on_endpoint(
    session: AsyncSession,
    webhook_id: uuid.UUID,
    outcomes: Sequence[Outcome],
    settings: Settings,
    now: datetime,
) -> None:
    """The endpoint's run of failures after these attempts (oldest first): a success ends the
    run, the failures after the last success extend or start it."""
    last_success = max((i for i, (_j, r) in enumerate(outcomes) if r.succeeded), default=None)
    failures = [r for _j, r in outcomes[0 if last_success is None else last_success + 1 :]]
    holds = [h for _j, r in outcomes if (h := _hold_after(r, settings, now)) is not None]
    state = await repository.record_endpoint_results(
        session,
        webhook_id,
        reset=last_success is not None,
        failures=len(failures),
        last_error=failures[-1].error if failures else None,
        hold_until=max(holds, default=None),
    )
    if not failures or state is None or not state.is_active:
        return
    provider_type = outcomes[0][0].provider_type
    reason = next(
        (g for r in failures if (g := gone_reason(provider_type, r.status_code)) is not None),
        None,
    )
    if (
        reason is None
        and state.consecutive_failures >= settings.disable_after_failures
        and state.failing_since is not None
        and now - state.failing_since >= timedelta(hours=settings.disable_after_failing_hours)
    ):
        reason = "too_many_consecutive_failures"
    if reason is not None:
        await disable_endpoint(session, webhook_id, reason=reason)


async def disable_endpoint(session: AsyncSession, webhook_id: uuid.UUID, *, reason: str) -> None:
    """Switch the endpoint off and tell its owner (``webhook.endpoint_disabled``, same
    transaction). Deliveries already owed stay pending until it is enabled again."""
    webhook = await repository.disable_endpoint(session, webhook_id, reason=reason)
    if webhook is None:
        return
    await add_event(
        session,
        make_event(
            WebhookEndpointDisabled(
                webhook_id=webhook.id,
                owner_id=webhook.owner_id,
                name=webhook.name,
                url=display_url(webhook.url),
                reason=reason,
                consecutive_failures=webhook.consecutive_failures,
            ),
            source=SOURCE,
            subject=webhook.id,
        ),
    )
    metrics.DISABLED.labels(reason).inc()
    log.warning(
        "webhooks.endpoint.disabled",
        webhook_id=str(webhook.id),
        reason=reason,
        consecutive_failures=webhook.consecutive_failures,
    )


async def send_test(
    sessionmaker: async_sessionmaker[AsyncSession],
    http: aiohttp.ClientSession,
    *,
    principal: Principal,
    webhook_id: uuid.UUID,
    settings: Settings,
) -> tuple[WebhookLog, AttemptResult]:
    """POST a ``webhook.test`` event to the endpoint now (even a disabled one) and log it.
    A test never changes the endpoint's state: no counters, no disabling."""
    async with sessionmaker() as session, session.begin():
        webhook = await get_owned_webhook(session, principal=principal, webhook_id=webhook_id)
        # never on Kafka: built here for this one request only
        payload = WebhookTest(webhook_id=webhook.id)
        event = make_event(payload, source=SOURCE, subject=webhook.id)
        job = ClaimedDelivery.of(
            webhook,
            delivery_id=None,
            event_id=event.id,
            event_type=event.type,
            payload=event.model_dump(mode="json", exclude_none=True),
            attempt_number=1,
            trigger_type="test",
            automatic_retries=False,
        )
    result = await send_once(http, job, settings=settings)
    entry = _attempt_log(job, result, None)
    async with sessionmaker() as session, session.begin():
        if await repository.get_webhook(session, webhook_id) is not None:
            session.add(entry)
    log.info(
        "webhooks.test.sent",
        webhook_id=str(webhook_id),
        status_code=result.status_code,
        outcome=result.outcome,
    )
    return entry, result
