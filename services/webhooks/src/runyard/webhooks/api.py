"""The webhooks API (``/api/v1/webhooks``): endpoints, their deliveries and attempts."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import AwareDatetime

from runyard.shared.identity import CurrentPrincipal, require_writer
from runyard.shared.pagination import DEFAULT_LIMIT, CursorParam, Limit
from runyard.shared.runtime import SessionDep, get_runtime
from runyard.webhooks import attempts, deliveries, endpoints
from runyard.webhooks.context import ServiceRuntime
from runyard.webhooks.schemas import (
    DeliveryAttemptOut,
    DeliveryAttemptPage,
    DeliveryDetail,
    DeliveryOut,
    DeliveryPage,
    DeliveryStatus,
    EventPattern,
    ReplayRequest,
    ReplayResult,
    WebhookCreate,
    WebhookCreated,
    WebhookOut,
    WebhookPage,
    WebhookTestResult,
    WebhookUpdate,
)

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"])


async def get_service_runtime(request: Request) -> ServiceRuntime:
    return get_runtime(request)


RuntimeDep = Annotated[ServiceRuntime, Depends(get_service_runtime)]


def created(webhook: object, secret: str) -> WebhookCreated:
    return WebhookCreated(**WebhookOut.model_validate(webhook).model_dump(), secret=secret)


@router.post("", status_code=201, response_model=WebhookCreated)
async def create_webhook(
    body: WebhookCreate,
    session: SessionDep,
    principal: CurrentPrincipal,
    runtime: RuntimeDep,
) -> WebhookCreated:
    """Register an endpoint. The response carries the signing secret; it is never shown again.

    The URL must be ``https`` and resolve only to public addresses (see the operations guide
    for the development-only exception)."""
    webhook, secret = await endpoints.create_webhook(
        session,
        principal=require_writer(principal),
        data=body,
        settings=runtime.settings,
        lookup=runtime.context.lookup,
    )
    return created(webhook, secret)


@router.get("", response_model=WebhookPage)
async def list_webhooks(
    session: SessionDep,
    principal: CurrentPrincipal,
    limit: Limit = DEFAULT_LIMIT,
    cursor: CursorParam = None,
) -> WebhookPage:
    rows, next_cursor = await endpoints.list_webhooks(
        session, principal=principal, limit=limit, cursor=cursor
    )
    return WebhookPage(items=[WebhookOut.model_validate(r) for r in rows], next_cursor=next_cursor)


@router.get("/{webhook_id}", response_model=WebhookOut)
async def get_webhook(
    webhook_id: uuid.UUID, session: SessionDep, principal: CurrentPrincipal
) -> WebhookOut:
    webhook = await endpoints.get_owned_webhook(session, principal=principal, webhook_id=webhook_id)
    return WebhookOut.model_validate(webhook)


@router.patch("/{webhook_id}", response_model=WebhookOut)
async def update_webhook(
    webhook_id: uuid.UUID,
    body: WebhookUpdate,
    session: SessionDep,
    principal: CurrentPrincipal,
    runtime: RuntimeDep,
) -> WebhookOut:
    """Change only the fields sent. A new URL is checked like on create."""
    webhook = await endpoints.update_webhook(
        session,
        principal=require_writer(principal),
        webhook_id=webhook_id,
        data=body,
        settings=runtime.settings,
        lookup=runtime.context.lookup,
    )
    return WebhookOut.model_validate(webhook)


@router.delete("/{webhook_id}", status_code=204)
async def delete_webhook(
    webhook_id: uuid.UUID, session: SessionDep, principal: CurrentPrincipal
) -> Response:
    await endpoints.delete_webhook(
        session, principal=require_writer(principal), webhook_id=webhook_id
    )
    return Response(status_code=204)


@router.post("/{webhook_id}/rotate-secret", response_model=WebhookCreated)
async def rotate_secret(
    webhook_id: uuid.UUID, session: SessionDep, principal: CurrentPrincipal, runtime: RuntimeDep
) -> WebhookCreated:
    """A new signing secret (shown once). Until ``previous_secret_expires_at`` (24 h by
    default) every message carries two signatures, one per secret, so receivers can switch
    without losing a message."""
    webhook, secret = await endpoints.rotate_secret(
        session,
        principal=require_writer(principal),
        webhook_id=webhook_id,
        settings=runtime.settings,
    )
    return created(webhook, secret)


@router.post("/{webhook_id}/enable", response_model=WebhookOut)
async def enable_webhook(
    webhook_id: uuid.UUID, session: SessionDep, principal: CurrentPrincipal
) -> WebhookOut:
    """Switch a disabled endpoint on again; its failure record starts from zero."""
    webhook = await endpoints.enable_webhook(
        session, principal=require_writer(principal), webhook_id=webhook_id
    )
    return WebhookOut.model_validate(webhook)


@router.post("/{webhook_id}/test", response_model=WebhookTestResult)
async def test_webhook(
    webhook_id: uuid.UUID,
    runtime: RuntimeDep,
    principal: CurrentPrincipal,
) -> WebhookTestResult:
    """Send a ``webhook.test`` event to the endpoint now and return what it answered.
    Works on a disabled endpoint too; a test never changes the endpoint's state."""
    entry, result = await attempts.send_test(
        runtime.sessionmaker,
        runtime.context.http,
        principal=require_writer(principal),
        webhook_id=webhook_id,
        settings=runtime.settings,
    )
    return WebhookTestResult(
        success=result.succeeded,
        event_id=entry.event_id,
        attempt_id=entry.id,
        status_code=result.status_code,
        response_body=result.response_body,
        error=result.error,
        duration_ms=result.duration_ms,
    )


@router.get("/{webhook_id}/deliveries", response_model=DeliveryPage)
async def list_deliveries(
    webhook_id: uuid.UUID,
    session: SessionDep,
    principal: CurrentPrincipal,
    status: DeliveryStatus | None = None,
    event_type: Annotated[
        EventPattern | None, Query(description="exact type or pattern (experiment.*)")
    ] = None,
    since: Annotated[AwareDatetime | None, Query(description="created at or after")] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: CursorParam = None,
) -> DeliveryPage:
    """Events owed to this endpoint, newest first: one per event, with its latest outcome."""
    rows, next_cursor = await deliveries.list_deliveries(
        session,
        principal=principal,
        webhook_id=webhook_id,
        status=status,
        event_type=event_type,
        since=since,
        limit=limit,
        cursor=cursor,
    )
    return DeliveryPage(
        items=[DeliveryOut.model_validate(r) for r in rows], next_cursor=next_cursor
    )


@router.get("/{webhook_id}/deliveries/{delivery_id}", response_model=DeliveryDetail)
async def get_delivery(
    webhook_id: uuid.UUID, delivery_id: uuid.UUID, session: SessionDep, principal: CurrentPrincipal
) -> DeliveryDetail:
    """One delivery with the event and every attempt."""
    delivery, logged = await deliveries.get_delivery(
        session, principal=principal, webhook_id=webhook_id, delivery_id=delivery_id
    )
    return DeliveryDetail(
        **DeliveryOut.model_validate(delivery).model_dump(),
        payload=delivery.payload,
        attempts=[DeliveryAttemptOut.model_validate(a) for a in logged],
    )


@router.post(
    "/{webhook_id}/deliveries/{delivery_id}/retry", status_code=202, response_model=DeliveryOut
)
async def retry_delivery(
    webhook_id: uuid.UUID, delivery_id: uuid.UUID, session: SessionDep, principal: CurrentPrincipal
) -> DeliveryOut:
    """Queue this delivery to go out now. A failed (or succeeded) one gets one more attempt;
    a pending one keeps its retry schedule."""
    delivery = await deliveries.retry_delivery(
        session, principal=require_writer(principal), webhook_id=webhook_id, delivery_id=delivery_id
    )
    return DeliveryOut.model_validate(delivery)


@router.post("/{webhook_id}/replay", status_code=202, response_model=ReplayResult)
async def replay(
    webhook_id: uuid.UUID, body: ReplayRequest, session: SessionDep, principal: CurrentPrincipal
) -> ReplayResult:
    """Queue every failed delivery created since ``since`` again (one attempt each)."""
    queued = await deliveries.replay_failed(
        session, principal=require_writer(principal), webhook_id=webhook_id, since=body.since
    )
    return ReplayResult(queued=queued)


@router.get("/{webhook_id}/attempts", response_model=DeliveryAttemptPage)
async def list_attempts(
    webhook_id: uuid.UUID,
    session: SessionDep,
    principal: CurrentPrincipal,
    status: Literal["success", "failed"] | None = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: CursorParam = None,
) -> DeliveryAttemptPage:
    """Every HTTP attempt to this endpoint (tests included), newest first."""
    rows, next_cursor = await deliveries.list_attempts(
        session,
        principal=principal,
        webhook_id=webhook_id,
        status=status,
        limit=limit,
        cursor=cursor,
    )
    return DeliveryAttemptPage(
        items=[DeliveryAttemptOut.model_validate(r) for r in rows], next_cursor=next_cursor
    )
