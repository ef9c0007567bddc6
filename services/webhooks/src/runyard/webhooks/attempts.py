"""Delivery attempts: claim due deliveries, send one attempt, record outcomes (retry schedule,
endpoint failure counts, automatic disabling), and the owner's test send.

Claiming and recording mutate and flush; they never commit. ``send_once`` touches no database;
``send_test`` owns its short transactions so no database connection waits on an HTTP call.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import aiohttp
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from runyard.shared.contracts.webhooks import WebhookTest
from runyard.shared.db import new_id, utcnow
from runyard.shared.events import make_event
from runyard.shared.identity import Principal
from runyard.shared.logging import get_logger
from runyard.shared.outbox import session_source
from runyard.webhooks import delivery_events, delivery_queue, metrics, repository
from runyard.webhooks.config import Settings
from runyard.webhooks.delivery import AttemptResult, build_request, gone_reason, next_retry, post
from runyard.webhooks.endpoints import disable_endpoint, get_owned_webhook
from runyard.webhooks.models import WebhookConfiguration, WebhookDelivery, WebhookLog
from runyard.webhooks.signing import SecretBox
from runyard.webhooks.ssrf import TargetPolicy

log = get_logger(__name__)


@functools.lru_cache(maxsize=16)
def _target_policy(allow_private: bool, http_allowed_hosts: str) -> TargetPolicy:
    return TargetPolicy(
        allow_private=allow_private,
        http_hosts=frozenset(
            h.strip().lower().rstrip(".") for h in http_allowed_hosts.split(",") if h.strip()
        ),
    )


def target_policy(settings: Settings) -> TargetPolicy:
    """``settings.target_policy()``, built once per settings."""
    return _target_policy(settings.allow_private_targets, settings.http_allowed_hosts)


@dataclass(frozen=True)
class ClaimedDelivery:
    """Everything one attempt needs, read while the delivery was claimed."""

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
    #: the payload as canonical JSON when fan-out has it already (the request body of a
    #: generic endpoint); else rendered from ``payload`` for the attempt
    body: str | None = None

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
        """The current secret, and the previous one while its overlap lasts (decrypted once
        per process: ``SecretBox`` keeps what it decrypted)."""
        secrets_ = [box.decrypt(self.secret_encrypted)]
        if (
            self.previous_secret_encrypted
            and self.previous_secret_expires_at is not None
            and self.previous_secret_expires_at > now
        ):
            secrets_.append(box.decrypt(self.previous_secret_encrypted))
        return secrets_


#: One attempt and what came of it.
Outcome = tuple[ClaimedDelivery, AttemptResult]


async def claim_due_deliveries(
    session: AsyncSession, *, limit: int, lease: timedelta, slack_rate: float = 1.0
) -> list[ClaimedDelivery]:
    rows = await delivery_queue.claim_due_deliveries(
        session, limit=limit, lease=lease, slack_rate=slack_rate
    )
    return [
        ClaimedDelivery(
            delivery_id=row["delivery_id"],
            webhook_id=row["webhook_id"],
            owner_id=row["owner_id"],
            event_id=row["event_id"],
            event_type=row["event_type"],
            payload=row["payload"],
            attempt_number=row["attempt_count"] + 1,
            url=row["url"],
            provider_type=row["provider_type"],
            secret_encrypted=row["secret_encrypted"],
            previous_secret_encrypted=row["previous_secret_encrypted"],
            previous_secret_expires_at=row["previous_secret_expires_at"],
            endpoint_settings=dict(row["endpoint_settings"] or {}),
            trigger_type=row["trigger_type"],
            automatic_retries=row["automatic_retries"],
        )
        for row in rows
    ]


async def send_once(
    http: aiohttp.ClientSession, job: ClaimedDelivery, *, settings: Settings
) -> AttemptResult:
    """Render, sign and POST one attempt (no database)."""
    try:
        request = build_request(
            provider_type=job.provider_type,
            secrets=job.signing_secrets(SecretBox.of(settings.secret_encryption_key), utcnow()),
            event=job.payload,
            custom_headers=(job.endpoint_settings or {}).get("headers"),
            base_url=settings.public_base_url,
            body=job.body,
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


def _attempt_row(
    job: ClaimedDelivery, result: AttemptResult, next_attempt_at: datetime | None
) -> dict[str, Any]:
    """``_attempt_log`` as a row to insert (no ORM object: a batch has hundreds)."""
    return {
        "id": new_id(),
        "webhook_id": job.webhook_id,
        "delivery_id": job.delivery_id,
        "owner_id": job.owner_id,
        "event_id": job.event_id,
        "event_type": job.event_type,
        "provider_type": job.provider_type,
        "url": job.url,
        "attempt_number": job.attempt_number,
        "status": "success" if result.succeeded else "failed",
        "response_status_code": result.status_code,
        "response_body": result.response_body,
        "error_message": result.error,
        "duration_ms": result.duration_ms,
        "trigger_type": job.trigger_type,
        "sent_at": result.sent_at or utcnow(),
        "next_attempt_at": next_attempt_at,
    }


def _hold_after(result: AttemptResult, settings: Settings, now: datetime) -> datetime | None:
    """After a 429 every request to the endpoint waits (at least the minimum, or Retry-After)."""
    if result.status_code != 429:
        return None
    wait = settings.throttled_retry_min_s
    if result.retry_after_s is not None:
        wait = max(wait, min(result.retry_after_s, settings.retry_after_max_s))
    return now + timedelta(seconds=wait)


async def record_attempts(
    session: AsyncSession, outcomes: Sequence[Outcome], *, settings: Settings
) -> None:
    """Log each attempt and settle its delivery (succeeded, retry later, or failed for good);
    count the attempts on their endpoints, in the order given, and disable an endpoint when
    the rules say so; add the outcomes to the endpoints' pending ``webhook.deliveries_updated``
    (``delivery_events``). A few statements for the whole batch, whatever its size."""
    now = utcnow()
    current = await delivery_queue.lock_deliveries(
        session, [job.delivery_id for job, _ in outcomes if job.delivery_id is not None]
    )
    attempts: list[dict[str, Any]] = []
    settled: list[dict[str, Any]] = []
    per_endpoint: dict[uuid.UUID, list[Outcome]] = {}
    windows: dict[uuid.UUID, delivery_events.Window] = {}
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
        attempts.append(_attempt_row(job, result, next_at if was == "pending" else None))
        window = windows.get(job.webhook_id)
        if window is None:
            window = windows[job.webhook_id] = delivery_events.Window(job.owner_id)
        if was != "pending":
            window.add(job, result, None)
            continue
        window.add(job, result, status)
        current[job.delivery_id] = (status, max(attempt_count, job.attempt_number))
        settled.append(
            {
                "id": job.delivery_id,
                "status": status,
                "attempt_count": max(attempt_count, job.attempt_number),
                "last_status_code": result.status_code,
                "last_error": result.error,
                "next_attempt_at": next_at,
            }
        )
        per_endpoint.setdefault(job.webhook_id, []).append((job, result))
        if status != "pending":
            metrics.observe_settled(job.provider_type, status)
        if result.succeeded:
            metrics.observe_lag(job.provider_type, job.payload.get("time"), now)
        log.info(
            "webhooks.delivery.attempted",
            webhook_id=str(job.webhook_id),
            delivery_id=str(job.delivery_id),
            event_id=job.event_id,
            event_type=job.event_type,
            attempt=job.attempt_number,
            trigger=job.trigger_type,
            status_code=result.status_code,
            outcome=result.outcome,
            delivery_status=status,
        )
    await repository.insert_attempts(session, attempts)
    await delivery_queue.settle_deliveries(session, settled, at=now, windows=windows)
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
    state = await delivery_queue.record_endpoint_results(
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
        # never on Kafka (so not through the outbox): built here for this one request only
        event = make_event(
            WebhookTest(webhook_id=webhook.id), source=session_source(session), subject=webhook.id
        )
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
