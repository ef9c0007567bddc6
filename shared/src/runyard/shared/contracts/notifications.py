"""Events published by the notifications service (source ``/runyard/notifications``)."""

from __future__ import annotations

import uuid

from runyard.shared.events import EventPayload


class EmailSent(EventPayload):
    event_type = "email.sent"
    email_id: uuid.UUID
    user_id: uuid.UUID | None = None
    to: str
    subject: str
    trigger_event_type: str | None = None
    trigger_event_id: str | None = None
    message_id: str | None = None


class EmailFailed(EventPayload):
    event_type = "email.failed"
    email_id: uuid.UUID
    user_id: uuid.UUID | None = None
    to: str
    subject: str
    trigger_event_type: str | None = None
    trigger_event_id: str | None = None
    error: str
    retry_count: int = 0


class NotificationPreferenceUpdated(EventPayload):
    event_type = "notification_preference.updated"
    user_id: uuid.UUID
    notification_event_type: str
    email_enabled: bool
    in_app_enabled: bool
    slack_enabled: bool
    webhook_enabled: bool
    email_frequency: str
