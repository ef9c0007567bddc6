from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from runyard.notifications.models import EmailLog, User


async def upsert_user(session: AsyncSession, *, values: dict[str, Any]) -> bool:
    """Insert or overwrite a user unless the stored row has the same or a newer ``sequence``."""
    row = insert(User).values(**values, updated_at=func.now())
    stmt = row.on_conflict_do_update(
        index_elements=[User.user_id],
        set_={
            **{k: row.excluded[k] for k in values if k != "user_id"},
            "updated_at": func.now(),
        },
        where=User.sequence < row.excluded.sequence,
    ).returning(User.user_id)
    return (await session.execute(stmt)).first() is not None


async def deactivate_user(
    session: AsyncSession, *, user_id: uuid.UUID, username: str, sequence: int
) -> bool:
    """Mark a user inactive; an unknown user becomes an inactive tombstone row (no email)."""
    row = insert(User).values(
        user_id=user_id,
        username=username,
        email=None,
        is_active=False,
        timezone="UTC",
        role="user",
        sequence=sequence,
        updated_at=func.now(),
    )
    stmt = row.on_conflict_do_update(
        index_elements=[User.user_id],
        set_={"is_active": False, "sequence": row.excluded.sequence, "updated_at": func.now()},
        where=User.sequence < row.excluded.sequence,
    ).returning(User.user_id)
    return (await session.execute(stmt)).first() is not None


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


async def claim_due_emails(session: AsyncSession, *, limit: int) -> list[EmailLog]:
    """Lock due rows (skipping rows another sender holds); the caller marks them ``sending``."""
    result = await session.execute(
        select(EmailLog)
        .where(EmailLog.status == "queued", EmailLog.next_attempt_at <= func.now())
        .order_by(EmailLog.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(result.scalars())


async def get_email_for_update(session: AsyncSession, email_id: uuid.UUID) -> EmailLog | None:
    result = await session.execute(
        select(EmailLog).where(EmailLog.id == email_id).with_for_update()
    )
    return result.scalar_one_or_none()


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
