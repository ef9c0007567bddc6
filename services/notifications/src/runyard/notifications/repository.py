from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from runyard.notifications.models import (
    AlertThrottle,
    DigestItem,
    EmailLog,
    InAppNotification,
    NotificationPreference,
    User,
)


async def get_user(session: AsyncSession, user_id: uuid.UUID) -> User | None:
    """The stored row, never a copy cached earlier in the transaction (it may have changed)."""
    return await session.get(User, user_id, populate_existing=True)


async def lock_user(session: AsyncSession, user_id: uuid.UUID) -> None:
    """Hold this user's lock until the transaction ends.

    Taken by a transaction parking an email for the user and by one storing the user's state, so
    whichever commits second sees what the first did: no email stays parked for a known user.
    """
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
        {"key": f"notifications.user:{user_id}"},
    )


async def insert_email(session: AsyncSession, *, values: dict[str, Any]) -> uuid.UUID | None:
    """Store an email; returns None if one with the same idempotency key already exists."""
    stmt = (
        insert(EmailLog)
        .values(retry_count=0, **values)
        .on_conflict_do_nothing(index_elements=[EmailLog.idempotency_key])
        .returning(EmailLog.id)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def parked_emails_for_update(session: AsyncSession, user_id: uuid.UUID) -> list[EmailLog]:
    result = await session.execute(
        select(EmailLog)
        .where(EmailLog.user_id == user_id, EmailLog.status == "awaiting_user")
        .order_by(EmailLog.created_at, EmailLog.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return list(result.scalars())


async def expire_parked_emails(
    session: AsyncSession, *, older_than: timedelta, user_id: uuid.UUID | None = None
) -> int:
    """Parked emails waiting longer than ``older_than`` (of one user, or all) are skipped."""
    stmt = update(EmailLog).where(
        EmailLog.status == "awaiting_user", EmailLog.created_at < func.now() - older_than
    )
    if user_id is not None:
        stmt = stmt.where(EmailLog.user_id == user_id)
    result = await session.execute(
        stmt.values(
            status="skipped", error_message="user_never_known", updated_at=func.now()
        ).execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def requeue_stuck_emails(session: AsyncSession, *, older_than: timedelta) -> int:
    """Rows left in ``sending`` (the sender died mid-send) go back to ``queued``."""
    result = await session.execute(
        update(EmailLog)
        .where(EmailLog.status == "sending", EmailLog.updated_at < func.now() - older_than)
        .values(status="queued", next_attempt_at=func.now(), updated_at=func.now())
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def claim_due_emails(
    session: AsyncSession, *, limit: int, domain: str
) -> list[dict[str, Any]]:
    """Mark up to ``limit`` due rows ``sending`` (skipping rows another sender holds), in one
    statement, and return them. A row without a Message-ID gets one in ``domain``, kept
    across attempts so that a resend after a crash carries the same Message-ID."""
    result = await session.execute(
        text(
            "UPDATE email_logs e SET status = 'sending', updated_at = now(),"
            " message_id = coalesce(e.message_id,"
            " '<' || replace(gen_random_uuid()::text, '-', '') || '@' || :domain || '>')"
            " FROM (SELECT id FROM email_logs"
            " WHERE status = 'queued' AND next_attempt_at <= now()"
            " ORDER BY next_attempt_at LIMIT :limit FOR UPDATE SKIP LOCKED) due"
            " WHERE e.id = due.id"
            " RETURNING e.id, e.to_address, e.subject, e.body_text, e.body_html,"
            " e.message_id, e.unsubscribe_url"
        ),
        {"limit": limit, "domain": domain},
    )
    return [dict(row._mapping) for row in result]


async def mark_emails_sent(session: AsyncSession, email_ids: list[uuid.UUID]) -> list[Any]:
    """``sent`` for the rows among ``email_ids`` still ``sending`` (one statement); returns
    them with what ``email.sent`` tells."""
    if not email_ids:
        return []
    result = await session.execute(
        text(
            "UPDATE email_logs SET status = 'sent', sent_at = now(), next_attempt_at = NULL,"
            " error_message = NULL, updated_at = now()"
            " WHERE id = ANY(CAST(:ids AS uuid[])) AND status = 'sending'"
            " RETURNING id, user_id, to_address, subject, event_type, event_id, message_id"
        ),
        {"ids": email_ids},
    )
    return list(result)


async def emails_for_update(
    session: AsyncSession, email_ids: list[uuid.UUID]
) -> dict[uuid.UUID, EmailLog]:
    result = await session.execute(
        select(EmailLog)
        .where(EmailLog.id.in_(email_ids))
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return {row.id: row for row in result.scalars()}


async def list_user_emails(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    limit: int,
    before: tuple[datetime, uuid.UUID] | None = None,
) -> list[EmailLog]:
    """Newest first; ``before`` is the (created_at, id) of the last row already seen."""
    stmt = select(EmailLog).where(EmailLog.user_id == user_id)
    if before is not None:
        stmt = stmt.where(tuple_(EmailLog.created_at, EmailLog.id) < tuple_(*before))
    stmt = stmt.order_by(EmailLog.created_at.desc(), EmailLog.id.desc()).limit(limit)
    return list((await session.execute(stmt)).scalars())


# --- preferences -------------------------------------------------------------------------------


async def preferences_of(session: AsyncSession, user_id: uuid.UUID) -> list[NotificationPreference]:
    result = await session.execute(
        select(NotificationPreference).where(NotificationPreference.user_id == user_id)
    )
    return list(result.scalars())


async def preference_for(
    session: AsyncSession, user_id: uuid.UUID, event_type: str
) -> NotificationPreference | None:
    result = await session.execute(
        select(NotificationPreference).where(
            NotificationPreference.user_id == user_id,
            NotificationPreference.event_type == event_type,
        )
    )
    return result.scalar_one_or_none()


async def upsert_preference(
    session: AsyncSession, *, user_id: uuid.UUID, event_type: str, values: dict[str, Any]
) -> NotificationPreference:
    row = insert(NotificationPreference).values(
        id=uuid.uuid4(), user_id=user_id, event_type=event_type, **values
    )
    stmt = (
        row.on_conflict_do_update(
            index_elements=[NotificationPreference.user_id, NotificationPreference.event_type],
            set_={**{k: row.excluded[k] for k in values}, "updated_at": func.now()},
        )
        .returning(NotificationPreference)
        .execution_options(populate_existing=True)
    )
    return (await session.execute(stmt)).scalar_one()


# --- in-app inbox ------------------------------------------------------------------------------


async def insert_in_app(session: AsyncSession, *, values: dict[str, Any]) -> uuid.UUID | None:
    stmt = (
        insert(InAppNotification)
        .values(id=uuid.uuid4(), **values)
        .on_conflict_do_nothing(
            index_elements=[InAppNotification.user_id, InAppNotification.event_id]
        )
        .returning(InAppNotification.id)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def list_in_app(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    limit: int,
    before: tuple[datetime, uuid.UUID] | None,
    unread_only: bool,
) -> list[InAppNotification]:
    stmt = select(InAppNotification).where(InAppNotification.user_id == user_id)
    if unread_only:
        stmt = stmt.where(InAppNotification.read_at.is_(None))
    if before is not None:
        stmt = stmt.where(
            tuple_(InAppNotification.created_at, InAppNotification.id) < tuple_(*before)
        )
    stmt = stmt.order_by(InAppNotification.created_at.desc(), InAppNotification.id.desc())
    return list((await session.execute(stmt.limit(limit))).scalars())


async def count_unread(session: AsyncSession, user_id: uuid.UUID) -> int:
    stmt = select(func.count()).where(
        InAppNotification.user_id == user_id, InAppNotification.read_at.is_(None)
    )
    return int((await session.execute(stmt)).scalar_one())


async def mark_read(
    session: AsyncSession, *, user_id: uuid.UUID, notification_id: uuid.UUID
) -> InAppNotification | None:
    stmt = (
        update(InAppNotification)
        .where(InAppNotification.id == notification_id, InAppNotification.user_id == user_id)
        .values(read_at=func.coalesce(InAppNotification.read_at, func.now()))
        .returning(InAppNotification)
        .execution_options(populate_existing=True, synchronize_session=False)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def mark_all_read(session: AsyncSession, user_id: uuid.UUID) -> int:
    result = await session.execute(
        update(InAppNotification)
        .where(InAppNotification.user_id == user_id, InAppNotification.read_at.is_(None))
        .values(read_at=func.now())
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


# --- digests -----------------------------------------------------------------------------------


async def insert_digest_item(session: AsyncSession, *, values: dict[str, Any]) -> uuid.UUID | None:
    stmt = (
        insert(DigestItem)
        .values(id=uuid.uuid4(), included_in_digest=False, **values)
        .on_conflict_do_nothing(index_elements=[DigestItem.user_id, DigestItem.event_id])
        .returning(DigestItem.id)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def claim_due_digest_items(
    session: AsyncSession, *, now: datetime, users: int
) -> list[tuple[DigestItem, User]]:
    """Lock up to ``users`` known users with due digest items, and all their due items.

    A user is claimed with a transaction-scoped advisory lock (``try``: a user another
    scheduler holds is passed over, so two schedulers work on different users and never build
    two digests of one user's items); their items are then locked by the claimer only, which
    leaves no lock cycle between schedulers.
    """
    claimed = await session.execute(
        text(
            "WITH candidates AS MATERIALIZED ("
            " SELECT q.user_id, min(q.scheduled_for) AS first_due"
            " FROM email_digest_queue q JOIN users u ON u.user_id = q.user_id"
            " WHERE NOT q.included_in_digest AND q.scheduled_for <= :now"
            " GROUP BY q.user_id ORDER BY first_due LIMIT :scan)"
            " SELECT user_id FROM candidates"
            " WHERE pg_try_advisory_xact_lock("
            "hashtextextended('notifications.digest:' || user_id::text, 0))"
            " LIMIT :users"
        ),
        {"now": now, "scan": users * 2, "users": users},
    )
    user_ids = [row[0] for row in claimed]
    if not user_ids:
        return []
    stmt = (
        select(DigestItem, User)
        .join(User, User.user_id == DigestItem.user_id)
        .where(
            DigestItem.included_in_digest.is_(False),
            DigestItem.scheduled_for <= now,
            DigestItem.user_id.in_(user_ids),
        )
        .order_by(DigestItem.user_id, DigestItem.created_at, DigestItem.id)
        .with_for_update(of=DigestItem)
    )
    return [(item, user) for item, user in (await session.execute(stmt)).all()]


async def insert_emails(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Store emails in one executemany; rows ``queued`` are due now (the database's clock)."""
    for status in ("queued", "skipped"):
        batch = [{"retry_count": 0, **row} for row in rows if row["status"] == status]
        if not batch:
            continue
        stmt = insert(EmailLog).on_conflict_do_nothing(index_elements=[EmailLog.idempotency_key])
        if status == "queued":
            stmt = stmt.values(next_attempt_at=func.now())
        await session.execute(stmt, batch)


async def mark_included(session: AsyncSession, included: dict[uuid.UUID, list[uuid.UUID]]) -> None:
    """``included``: digest email id -> the ids of the items it carries (one statement)."""
    pairs = [(item_id, email_id) for email_id, items in included.items() for item_id in items]
    if not pairs:
        return
    await session.execute(
        text(
            "UPDATE email_digest_queue q SET included_in_digest = true,"
            " digest_email_id = v.email_id, updated_at = now()"
            " FROM unnest(CAST(:items AS uuid[]), CAST(:emails AS uuid[])) AS v(item_id, email_id)"
            " WHERE q.id = v.item_id"
        ),
        {"items": [p[0] for p in pairs], "emails": [p[1] for p in pairs]},
    )


# --- alert throttle ----------------------------------------------------------------------------


async def lock_throttle(
    session: AsyncSession, *, user_id: uuid.UUID, event_type: str
) -> AlertThrottle | None:
    result = await session.execute(
        select(AlertThrottle)
        .where(AlertThrottle.user_id == user_id, AlertThrottle.event_type == event_type)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return result.scalar_one_or_none()


async def open_throttle_window(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    event_type: str,
    started_at: datetime,
    ends_at: datetime,
) -> None:
    row = insert(AlertThrottle).values(
        user_id=user_id,
        event_type=event_type,
        window_started_at=started_at,
        window_ends_at=ends_at,
        suppressed_count=0,
        summary_email_id=None,
        updated_at=func.now(),
    )
    await session.execute(
        row.on_conflict_do_update(
            index_elements=[AlertThrottle.user_id, AlertThrottle.event_type],
            set_={
                "window_started_at": row.excluded.window_started_at,
                "window_ends_at": row.excluded.window_ends_at,
                "suppressed_count": 0,
                "summary_email_id": None,
                "updated_at": func.now(),
            },
        )
    )


async def update_queued_email(
    session: AsyncSession, *, email_id: uuid.UUID, values: dict[str, Any]
) -> bool:
    """Overwrite a still ``queued`` email (not yet claimed by a sender); False if it is not."""
    result = await session.execute(
        update(EmailLog)
        .where(EmailLog.id == email_id, EmailLog.status == "queued")
        .values(**values, updated_at=func.now())
        .returning(EmailLog.id)
        .execution_options(synchronize_session=False)
    )
    return result.first() is not None
