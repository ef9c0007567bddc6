from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from runyard.shared.pagination import Page


class EmailLogOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    to_address: str | None
    subject: str | None
    template_name: str | None
    event_type: str
    event_id: str
    status: str
    provider: str
    message_id: str | None
    error_message: str | None
    retry_count: int
    next_attempt_at: datetime | None
    sent_at: datetime | None
    created_at: datetime
    updated_at: datetime


class EmailLogPage(Page[EmailLogOut]):
    pass


Frequency = Literal["immediate", "hourly", "daily", "weekly", "never"]


class PreferenceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    event_type: str
    label: str
    email_enabled: bool
    in_app_enabled: bool
    slack_enabled: bool
    webhook_enabled: bool
    email_frequency: Frequency
    is_default: bool = Field(description="No stored choice: these are the event type's defaults.")
    critical: bool = Field(
        description="Security alert: emailed at once, never digested, cannot be switched off."
    )
    updated_at: datetime | None


class PreferenceList(BaseModel):
    items: list[PreferenceOut]


class PreferenceUpdate(BaseModel):
    """The fields to change; the ones left out keep their current value."""

    model_config = ConfigDict(extra="forbid")

    email_enabled: bool | None = None
    in_app_enabled: bool | None = None
    slack_enabled: bool | None = Field(
        default=None, description="False: the webhooks service skips your Slack endpoints."
    )
    webhook_enabled: bool | None = Field(
        default=None,
        description="False: the webhooks service skips your generic and Teams endpoints.",
    )
    email_frequency: Frequency | None = None


class InAppNotificationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    event_type: str
    event_id: str
    title: str
    body: str
    data: dict[str, Any]
    read_at: datetime | None
    created_at: datetime


class InboxPage(Page[InAppNotificationOut]):
    unread_count: int


class UnreadCount(BaseModel):
    unread_count: int


class MarkedRead(BaseModel):
    marked_read: int
