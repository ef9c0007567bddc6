from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, field_validator

from runyard.shared.pagination import Page

ProviderType = Literal["generic", "slack", "teams"]
EventPattern = Annotated[
    str, StringConstraints(min_length=1, max_length=100, pattern=r"^[a-z0-9_.*]+$")
]
TriggerType = Literal["event", "test", "manual_retry", "replay"]
DeliveryStatus = Literal["pending", "succeeded", "failed"]

HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$")
#: Headers a configuration may not set: the transport's, the signature's and ours.
RESERVED_HEADERS = frozenset(
    {
        "host",
        "content-type",
        "content-length",
        "content-encoding",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
        "expect",
        "user-agent",
        "cookie",
    }
)


class WebhookSettings(BaseModel):
    """Per-endpoint settings."""

    model_config = ConfigDict(extra="forbid")

    headers: dict[str, str] = Field(
        default_factory=dict,
        max_length=20,
        description="Extra headers sent with every request (e.g. an Authorization header).",
    )
    rate_limit_per_second: float | None = Field(
        default=None,
        gt=0,
        le=1000,
        description="Requests per second at most; unset: unlimited (Slack endpoints: 1).",
    )

    @field_validator("headers")
    @classmethod
    def _check_headers(cls, headers: dict[str, str]) -> dict[str, str]:
        for name, value in headers.items():
            lowered = name.lower()
            if not HEADER_NAME.match(name):
                raise ValueError(f"{name!r} is not a valid header name")
            if lowered in RESERVED_HEADERS or lowered.startswith("webhook-"):
                raise ValueError(f"the {name!r} header is set by Runyard")
            if len(value) > 4096 or any(c in value for c in "\r\n\x00"):
                raise ValueError(f"the value of {name!r} is too long or has a line break")
        return headers


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
    settings: WebhookSettings = Field(default_factory=WebhookSettings)


class WebhookUpdate(BaseModel):
    """Only the fields sent are changed. ``is_active: true`` is the same as ``/enable``."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=255)
    provider_type: ProviderType | None = None
    url: str | None = Field(default=None, min_length=1, max_length=2048)
    enabled_events: list[EventPattern] | None = Field(default=None, min_length=1, max_length=100)
    description: str | None = Field(default=None, max_length=10_000)
    settings: WebhookSettings | None = None
    is_active: bool | None = None


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
    failing_since: datetime | None = None
    last_used_at: datetime | None
    last_error: str | None
    disabled_at: datetime | None = None
    disabled_reason: str | None = Field(
        default=None,
        description="endpoint_gone (HTTP 410), endpoint_rejected (Slack 403/404), "
        "too_many_consecutive_failures, or manual",
    )
    previous_secret_expires_at: datetime | None = Field(
        default=None, description="Until then the previous secret signs too (after a rotation)."
    )
    created_at: datetime
    updated_at: datetime


class WebhookCreated(WebhookOut):
    secret: str = Field(description="The signing secret (whsec_...). Shown only once.")


class WebhookPage(Page[WebhookOut]):
    pass


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
    trigger_type: TriggerType
    sent_at: datetime
    next_attempt_at: datetime | None = None


class DeliveryAttemptPage(Page[DeliveryAttemptOut]):
    pass


class DeliveryOut(BaseModel):
    """One event owed to the endpoint, with the outcome of its latest attempt."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    webhook_id: uuid.UUID
    event_id: str
    event_type: str
    status: DeliveryStatus
    attempt_count: int
    next_attempt_at: datetime | None = Field(description="When it is tried next (pending only).")
    last_status_code: int | None
    last_error: str | None
    last_attempt_at: datetime | None
    created_at: datetime
    updated_at: datetime


class DeliveryDetail(DeliveryOut):
    payload: dict[str, Any] = Field(description="The event, as delivered to generic endpoints.")
    attempts: list[DeliveryAttemptOut]


class DeliveryPage(Page[DeliveryOut]):
    pass


class ReplayRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    since: AwareDatetime = Field(description="Failed deliveries created at or after this time.")


class ReplayResult(BaseModel):
    queued: int = Field(description="How many failed deliveries were queued again.")


class WebhookTestResult(BaseModel):
    success: bool
    event_id: str
    attempt_id: uuid.UUID
    status_code: int | None
    response_body: str | None
    error: str | None
    duration_ms: int
