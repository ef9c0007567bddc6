"""The in-app inbox: one row per notification, listed newest first, read one by one or all."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from runyard.notifications import repository
from runyard.notifications.errors import NotificationNotFound
from runyard.notifications.models import InAppNotification
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
    """Store the notification; None if this event is in the user's inbox already."""
    return await repository.insert_in_app(
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
    row = await repository.mark_read(session, user_id=user_id, notification_id=notification_id)
    if row is None:
        raise NotificationNotFound()
    return row


async def mark_all_read(session: AsyncSession, *, user_id: uuid.UUID) -> int:
    return await repository.mark_all_read(session, user_id)
