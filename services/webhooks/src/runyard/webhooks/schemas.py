from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

ProviderType = Literal["generic", "slack", "teams"]
EventPattern = Annotated[
    str, StringConstraints(min_length=1, max_length=100, pattern=r"^[a-z0-9_.*]+$")
]


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=255)
    provider_type: ProviderType = "generic"
    url: str = Field(min_length=1, max_length=2048)
    enabled_events: list[EventPattern] = Field(
        min_length=1,
        max_length=100,
        description='Event types to deliver; wildcards allowed ("experiment.*", "*").',
    )
    description: str | None = Field(default=None, max_length=10_000)
    settings: dict[str, Any] = Field(default_factory=dict)


class WebhookOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    owner_id: uuid.UUID
    name: str
    provider_type: ProviderType
    url: str
    enabled_events: list[str]
    description: str | None
    settings: dict[str, Any]
    is_active: bool
    consecutive_failures: int
    last_used_at: datetime | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime


class WebhookCreated(WebhookOut):
    secret: str = Field(description="The signing secret (whsec_...). Shown only once.")


class WebhookPage(BaseModel):
    items: list[WebhookOut]
    next_cursor: str | None


class DeliveryAttemptOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    webhook_id: uuid.UUID
    delivery_id: uuid.UUID | None
    event_id: str
    event_type: str
    attempt_number: int
    status: Literal["success", "failed"]
    response_status_code: int | None
    response_body: str | None
    error_message: str | None
    duration_ms: int
    trigger_type: Literal["event", "manual"]
    sent_at: datetime


class DeliveryAttemptPage(BaseModel):
    items: list[DeliveryAttemptOut]
    next_cursor: str | None
