"""The in-app inbox: one row per notification, listed newest first, read one by one or all."""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from runyard.notifications import repository
from runyard.notifications.models import InAppNotification
from runyard.shared.http import ProblemError


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


def encode_cursor(row: InAppNotification) -> str:
    raw = f"{row.created_at.isoformat()}|{row.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created_at, _, row_id = raw.partition("|")
        parsed = datetime.fromisoformat(created_at)
        if parsed.tzinfo is None:
            raise ValueError("naive timestamp")
        return parsed, uuid.UUID(row_id)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise ProblemError(400, "Bad Request", "Malformed cursor.") from exc


async def list_inbox(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    limit: int,
    cursor: str | None,
    unread_only: bool,
) -> InboxPage:
    before = decode_cursor(cursor) if cursor else None
    rows = await repository.list_in_app(
        session, user_id=user_id, limit=limit + 1, before=before, unread_only=unread_only
    )
    items = rows[:limit]
    return InboxPage(
        items=items,
        next_cursor=encode_cursor(items[-1]) if len(rows) > limit else None,
        unread_count=await repository.count_unread(session, user_id),
    )


async def unread_count(session: AsyncSession, *, user_id: uuid.UUID) -> int:
    return await repository.count_unread(session, user_id)


async def mark_read(
    session: AsyncSession, *, user_id: uuid.UUID, notification_id: uuid.UUID
) -> InAppNotification:
    row = await repository.mark_read(session, user_id=user_id, notification_id=notification_id)
    if row is None:
        raise ProblemError(404, "Not Found", "No such notification in your inbox.")
    return row


async def mark_all_read(session: AsyncSession, *, user_id: uuid.UUID) -> int:
    return await repository.mark_all_read(session, user_id)
