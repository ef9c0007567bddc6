"""The in-app inbox: one row per notification, listed newest first, read one by one or all.

Every change of a user's unread entries is published in its transaction, with the unread count
after it: ``notification.created`` for a new entry, ``notification.read`` when marking read
changed something (the console's badge follows them)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from runyard.notifications import repository
from runyard.notifications.errors import NotificationNotFound
from runyard.notifications.models import InAppNotification
from runyard.shared.contracts.notifications import NotificationCreated, NotificationRead
from runyard.shared.outbox import emit
from runyard.shared.pagination import cut, decode_cursor

#: The cursor kind of the inbox (``GET /inbox``, with or without ``unread_only``).
INBOX = "notifications.inbox"


async def add(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    event_type: str,
    event_id: str,
    title: str,
    body: str,
    data: dict[str, Any],
) -> uuid.UUID | None:
    """Store the notification and publish ``notification.created``; None (and no event) if
    this event is in the user's inbox already."""
    notification_id = await repository.insert_in_app(
        session,
        values={
            "user_id": user_id,
            "event_type": event_type,
            "event_id": event_id,
            "title": title,
            "body": body,
            "data": data,
        },
    )
    if notification_id is not None:
        await emit(
            session,
            NotificationCreated(
                notification_id=notification_id,
                user_id=user_id,
                trigger_event_type=event_type,
                trigger_event_id=event_id,
                title=title,
                unread_count=await repository.count_unread(session, user_id),
            ),
            subject=user_id,
        )
    return notification_id


@dataclass(frozen=True)
class InboxPage:
    items: list[InAppNotification]
    next_cursor: str | None
    unread_count: int


async def list_inbox(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    limit: int,
    cursor: str | None,
    unread_only: bool,
) -> InboxPage:
    rows = await repository.list_in_app(
        session,
        user_id=user_id,
        limit=limit + 1,
        before=decode_cursor(cursor, INBOX, datetime, uuid.UUID),
        unread_only=unread_only,
    )
    items, next_cursor = cut(rows, limit, INBOX, lambda row: (row.created_at, row.id))
    return InboxPage(
        items=items,
        next_cursor=next_cursor,
        unread_count=await repository.count_unread(session, user_id),
    )


async def unread_count(session: AsyncSession, *, user_id: uuid.UUID) -> int:
    return await repository.count_unread(session, user_id)


async def mark_read(
    session: AsyncSession, *, user_id: uuid.UUID, notification_id: uuid.UUID
) -> InAppNotification:
    """Idempotent: marking a read entry again keeps its ``read_at`` and publishes nothing."""
    found = await session.get(InAppNotification, notification_id)
    was_unread = found is not None and found.read_at is None
    row = await repository.mark_read(session, user_id=user_id, notification_id=notification_id)
    if row is None:
        raise NotificationNotFound()
    if was_unread:
        unread = await repository.count_unread(session, user_id)
        await _publish_read(session, user_id, notification_id, 1, unread)
    return row


async def mark_all_read(session: AsyncSession, *, user_id: uuid.UUID) -> int:
    marked = await repository.mark_all_read(session, user_id)
    if marked:
        unread = await repository.count_unread(session, user_id)
        await _publish_read(session, user_id, None, marked, unread)
    return marked


async def _publish_read(
    session: AsyncSession,
    user_id: uuid.UUID,
    notification_id: uuid.UUID | None,
    marked: int,
    unread: int,
) -> None:
    await emit(
        session,
        NotificationRead(
            user_id=user_id,
            notification_id=notification_id,
            marked_read=marked,
            unread_count=unread,
        ),
        subject=user_id,
    )
