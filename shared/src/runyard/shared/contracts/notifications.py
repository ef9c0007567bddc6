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


class NotificationCreated(EventPayload):
    """An entry was added to a user's in-app inbox; ``unread_count`` is the user's unread
    entries as the adding transaction saw them (the console's badge)."""

    event_type = "notification.created"
    notification_id: uuid.UUID
    user_id: uuid.UUID
    #: the event the entry is about
    trigger_event_type: str
    trigger_event_id: str
    title: str
    unread_count: int


class NotificationRead(EventPayload):
    """The user marked inbox entries read: one (``notification_id``) or all of them (null)."""

    event_type = "notification.read"
    user_id: uuid.UUID
    notification_id: uuid.UUID | None = None
    #: entries this change marked read (at least 1: marking nothing publishes nothing)
    marked_read: int
    unread_count: int
