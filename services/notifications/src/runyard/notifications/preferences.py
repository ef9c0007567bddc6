"""Notification preferences per (user, event type): defaults, changes, one-click unsubscribe.

Every change is published as ``notification_preference.updated`` (outbox, same transaction):
the webhooks service mutes the user's Slack (``slack_enabled``) and generic/Teams
(``webhook_enabled``) deliveries of that event type from it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from runyard.notifications import notices, repository
from runyard.notifications.errors import (
    InvalidUnsubscribeLink,
    SecurityAlertAlwaysEmailed,
    UnknownEventType,
)
from runyard.notifications.links import InvalidToken, Links
from runyard.notifications.models import DIGEST_FREQUENCIES
from runyard.shared.contracts.notifications import NotificationPreferenceUpdated
from runyard.shared.logging import get_logger
from runyard.shared.outbox import emit

log = get_logger(__name__)

FIELDS = ("email_enabled", "in_app_enabled", "slack_enabled", "webhook_enabled", "email_frequency")


@dataclass(frozen=True)
class Preference:
    event_type: str
    email_enabled: bool
    in_app_enabled: bool
    slack_enabled: bool
    webhook_enabled: bool
    email_frequency: str
    #: no stored choice: the event type's defaults
    is_default: bool
    critical: bool
    label: str
    updated_at: datetime | None = None

    @property
    def emails(self) -> bool:
        return self.email_enabled and self.email_frequency != "never"

    @property
    def digested(self) -> bool:
        return self.emails and self.email_frequency in DIGEST_FREQUENCIES


def effective(event_type: str, stored: Any | None) -> Preference:
    """The stored choice, else the defaults; a critical type always emails at once."""
    notice = notices.NOTICES[event_type]
    source: Any = stored if stored is not None else notice.defaults
    values = {name: getattr(source, name) for name in FIELDS}
    if notice.critical:
        values.update(email_enabled=True, email_frequency="immediate")
    return Preference(
        event_type=event_type,
        **values,
        is_default=stored is None,
        critical=notice.critical,
        label=notice.label,
        updated_at=getattr(stored, "updated_at", None),
    )


def known_event_type(event_type: str) -> notices.Notice:
    notice = notices.NOTICES.get(event_type)
    if notice is None:
        raise UnknownEventType(event_type, notices.NOTICES)
    return notice


async def preference_for(session: AsyncSession, user_id: uuid.UUID, event_type: str) -> Preference:
    return effective(event_type, await repository.preference_for(session, user_id, event_type))


async def list_preferences(session: AsyncSession, *, user_id: uuid.UUID) -> list[Preference]:
    stored = {p.event_type: p for p in await repository.preferences_of(session, user_id)}
    return [effective(t, stored.get(t)) for t in sorted(notices.NOTICES)]


async def update_preference(
    session: AsyncSession, *, user_id: uuid.UUID, event_type: str, changes: dict[str, Any]
) -> Preference:
    """Apply ``changes`` (any of ``FIELDS``) over the current preference and publish it."""
    notice = known_event_type(event_type)
    current = await preference_for(session, user_id, event_type)
    values = {name: changes.get(name, getattr(current, name)) for name in FIELDS}
    if notice.critical and (
        not values["email_enabled"] or values["email_frequency"] != "immediate"
    ):
        raise SecurityAlertAlwaysEmailed(event_type)
    return await store_preference(session, user_id=user_id, event_type=event_type, values=values)


async def store_preference(
    session: AsyncSession, *, user_id: uuid.UUID, event_type: str, values: dict[str, Any]
) -> Preference:
    stored = await repository.upsert_preference(
        session, user_id=user_id, event_type=event_type, values=values
    )
    await emit(
        session,
        NotificationPreferenceUpdated(
            user_id=user_id, notification_event_type=event_type, **values
        ),
        subject=user_id,
    )
    log.info("notifications.preference.updated", user_id=str(user_id), event_type=event_type)
    return effective(event_type, stored)


@dataclass(frozen=True)
class UnsubscribeRequest:
    user_id: uuid.UUID
    #: the event types of the link that can be unsubscribed from (known, not critical)
    event_types: list[str]
    labels: list[str]


def read_unsubscribe_token(token: str, *, links: Links, now: datetime) -> UnsubscribeRequest:
    try:
        claims = links.read_unsubscribe_token(token, now=now)
    except InvalidToken as exc:
        log.info("notifications.unsubscribe.rejected", reason=str(exc))
        raise InvalidUnsubscribeLink() from exc
    types = [
        t for t in claims.event_types if t in notices.NOTICES and not notices.NOTICES[t].critical
    ]
    return UnsubscribeRequest(
        user_id=claims.user_id,
        event_types=types,
        labels=[notices.NOTICES[t].label for t in types],
    )


async def unsubscribe(
    session: AsyncSession, *, token: str, links: Links, now: datetime
) -> UnsubscribeRequest:
    """One-click unsubscribe: the link's event types go to ``email_frequency = never``."""
    request = read_unsubscribe_token(token, links=links, now=now)
    for event_type in request.event_types:
        current = await preference_for(session, request.user_id, event_type)
        if current.email_frequency == "never":
            continue
        values = {name: getattr(current, name) for name in FIELDS}
        values["email_frequency"] = "never"
        await store_preference(
            session, user_id=request.user_id, event_type=event_type, values=values
        )
    log.info("notifications.unsubscribed", user_id=str(request.user_id), types=request.event_types)
    return request
