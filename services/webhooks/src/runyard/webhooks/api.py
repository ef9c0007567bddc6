from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from runyard.shared.identity import CurrentPrincipal, require_writer
from runyard.shared.runtime import RuntimeDep, SessionDep
from runyard.webhooks import service
from runyard.webhooks.config import Settings
from runyard.webhooks.schemas import (
    DeliveryAttemptOut,
    DeliveryAttemptPage,
    WebhookCreate,
    WebhookCreated,
    WebhookOut,
    WebhookPage,
)

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"])


def get_settings(runtime: RuntimeDep) -> Settings:
    settings = runtime.settings
    if not isinstance(settings, Settings):
        raise TypeError("webhooks app built without webhooks Settings")
    return settings


SettingsDep = Annotated[Settings, Depends(get_settings)]
Limit = Annotated[int, Query(ge=1, le=500)]


@router.post("", status_code=201, response_model=WebhookCreated)
async def create_webhook(
    body: WebhookCreate, session: SessionDep, principal: CurrentPrincipal, settings: SettingsDep
) -> WebhookCreated:
    """Register an endpoint. The response carries the signing secret; it is never shown again."""
    webhook, secret = await service.create_webhook(
        session, principal=require_writer(principal), data=body, settings=settings
    )
    return WebhookCreated(**WebhookOut.model_validate(webhook).model_dump(), secret=secret)


@router.get("", response_model=WebhookPage)
async def list_webhooks(
    session: SessionDep,
    principal: CurrentPrincipal,
    limit: Limit = 50,
    cursor: str | None = None,
) -> WebhookPage:
    rows, next_cursor = await service.list_webhooks(
        session, principal=principal, limit=limit, cursor=cursor
    )
    return WebhookPage(items=[WebhookOut.model_validate(r) for r in rows], next_cursor=next_cursor)


@router.get("/{webhook_id}", response_model=WebhookOut)
async def get_webhook(
    webhook_id: uuid.UUID, session: SessionDep, principal: CurrentPrincipal
) -> WebhookOut:
    webhook = await service.get_owned_webhook(session, principal=principal, webhook_id=webhook_id)
    return WebhookOut.model_validate(webhook)


@router.delete("/{webhook_id}", status_code=204)
async def delete_webhook(
    webhook_id: uuid.UUID, session: SessionDep, principal: CurrentPrincipal
) -> Response:
    await service.delete_webhook(
        session, principal=require_writer(principal), webhook_id=webhook_id
    )
    return Response(status_code=204)


@router.get("/{webhook_id}/deliveries", response_model=DeliveryAttemptPage)
async def list_deliveries(
    webhook_id: uuid.UUID,
    session: SessionDep,
    principal: CurrentPrincipal,
    limit: Limit = 50,
    cursor: str | None = None,
) -> DeliveryAttemptPage:
    """Delivery attempts to this endpoint, newest first (one row per HTTP attempt)."""
    rows, next_cursor = await service.list_delivery_attempts(
        session, principal=principal, webhook_id=webhook_id, limit=limit, cursor=cursor
    )
    return DeliveryAttemptPage(
        items=[DeliveryAttemptOut.model_validate(r) for r in rows], next_cursor=next_cursor
    )
