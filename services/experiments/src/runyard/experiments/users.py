"""Read model of auth's users, fed by ``user.*`` events. Events carry the owner's name and email
from here, so no request ever calls the auth service."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from runyard.experiments.models import User
from runyard.shared.logging import get_logger
from runyard.shared.readmodel import upsert_if_newer

log = get_logger(__name__)


def _applied(applied: bool, user_id: uuid.UUID, sequence: int) -> bool:
    if not applied:
        log.info("experiments.user.stale_update_ignored", user_id=str(user_id), sequence=sequence)
    return applied


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
    return _applied(await upsert_if_newer(session, User, values, key="user_id"), user_id, sequence)


async def deactivate_user(
    session: AsyncSession, *, user_id: uuid.UUID, username: str, sequence: int
) -> bool:
    """Mark the user inactive; one not seen before is stored as an inactive row without email."""
    values = {
        "user_id": user_id,
        "username": username,
        "email": None,
        "role": "user",
        "is_active": False,
        "sequence": sequence,
    }
    applied = await upsert_if_newer(session, User, values, key="user_id", update=["is_active"])
    return _applied(applied, user_id, sequence)


async def owner_fields(session: AsyncSession, owner_id: uuid.UUID) -> dict[str, Any]:
    """The owner's names as every event about an owned row carries them (None if unknown)."""
    owner = await session.get(User, owner_id)
    return {
        "owner_username": owner.username if owner else None,
        "owner_email": owner.email if owner else None,
        "owner_full_name": owner.full_name if owner else None,
    }
