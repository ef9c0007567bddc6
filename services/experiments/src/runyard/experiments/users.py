"""Read model of auth's users, fed by ``user.*`` events. Events carry the owner's name and email
from here, so no request ever calls the auth service."""

from __future__ import annotations

import uuid

from sqlalchemy import func
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from runyard.experiments.models import User
from runyard.shared.logging import get_logger

log = get_logger(__name__)


async def apply_user_snapshot(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    username: str,
    email: str,
    full_name: str | None,
    role: str,
    is_active: bool,
    sequence: int,
) -> bool:
    """Store the user's state unless the stored one is as new or newer (``sequence``)."""
    values = {
        "user_id": user_id,
        "username": username,
        "email": email,
        "full_name": full_name,
        "role": role,
        "is_active": is_active,
        "sequence": sequence,
    }
    row = insert(User).values(**values, updated_at=func.now())
    stmt = row.on_conflict_do_update(
        index_elements=[User.user_id],
        set_={
            **{k: row.excluded[k] for k in values if k != "user_id"},
            "updated_at": func.now(),
        },
        where=User.sequence < row.excluded.sequence,
    ).returning(User.user_id)
    applied = (await session.execute(stmt)).first() is not None
    if not applied:
        log.info("experiments.user.stale_update_ignored", user_id=str(user_id), sequence=sequence)
    return applied


async def deactivate_user(
    session: AsyncSession, *, user_id: uuid.UUID, username: str, sequence: int
) -> bool:
    """Mark the user inactive; one not seen before is stored as an inactive row without email."""
    row = insert(User).values(
        user_id=user_id,
        username=username,
        email=None,
        role="user",
        is_active=False,
        sequence=sequence,
        updated_at=func.now(),
    )
    stmt = row.on_conflict_do_update(
        index_elements=[User.user_id],
        set_={"is_active": False, "sequence": row.excluded.sequence, "updated_at": func.now()},
        where=User.sequence < row.excluded.sequence,
    ).returning(User.user_id)
    applied = (await session.execute(stmt)).first() is not None
    if not applied:
        log.info("experiments.user.stale_update_ignored", user_id=str(user_id), sequence=sequence)
    return applied
