"""The events that carry a user's state, in the outbox of the change's transaction.

A user's events are numbered by ``users.version`` (their ``sequence``), so readers keep the
newest state whatever order the events arrive in.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from runyard.auth.models import User
from runyard.shared.contracts.auth import UserDeactivated, UserRegistered, UserUpdated
from runyard.shared.events import EventPayload
from runyard.shared.outbox import emit


def bump_version(user: User) -> int:
    """The user's version after one more published change (the events' ``sequence``)."""
    user.version += 1
    return user.version


def user_state(user: User) -> dict[str, Any]:
    """The fields ``user.registered`` and ``user.updated`` both carry: the whole user."""
    return {
        "user_id": user.id,
        "username": user.username,
        "email": user.email,
        "role": user.role,
        "is_active": user.is_active,
        "timezone": user.timezone,
        "full_name": user.full_name,
    }


async def user_registered(session: AsyncSession, user: User) -> None:
    payload = UserRegistered(**user_state(user))
    await emit(session, payload, subject=user.id, sequence=user.version)


async def user_changed(session: AsyncSession, user: User, payload: EventPayload) -> None:
    """``payload``, an event about ``user``, as the user's next version."""
    await emit(session, payload, subject=user.id, sequence=bump_version(user))


async def user_updated(session: AsyncSession, user: User) -> None:
    await user_changed(session, user, UserUpdated(**user_state(user)))


async def user_deactivated(session: AsyncSession, user: User) -> None:
    await user_changed(session, user, UserDeactivated(user_id=user.id, username=user.username))
