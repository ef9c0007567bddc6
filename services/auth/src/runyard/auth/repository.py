from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from runyard.auth.models import LoginHistory, User


async def insert_user_unless_taken(session: AsyncSession, **values: Any) -> User | None:
    """Insert a user; ``None`` if the username or email is taken (case-insensitively)."""
    result = await session.execute(
        insert(User).values(**values).on_conflict_do_nothing().returning(User)
    )
    return result.scalar_one_or_none()


async def taken_fields(session: AsyncSession, *, username: str, email: str) -> list[str]:
    """Which of ``username``/``email`` an existing user already holds."""
    rows = await session.execute(
        select(
            func.lower(User.username) == func.lower(username),
            func.lower(User.email) == func.lower(email),
        ).where(
            or_(
                func.lower(User.username) == func.lower(username),
                func.lower(User.email) == func.lower(email),
            )
        )
    )
    fields: set[str] = set()
    for same_username, same_email in rows:
        if same_username:
            fields.add("username")
        if same_email:
            fields.add("email")
    return sorted(fields)


async def get_user_by_login_for_update(session: AsyncSession, login: str) -> User | None:
    """By email if ``login`` contains ``@`` (usernames cannot), else by username."""
    column = User.email if "@" in login else User.username
    result = await session.execute(
        select(User).where(func.lower(column) == func.lower(login)).with_for_update()
    )
    return result.scalar_one_or_none()


async def get_user(session: AsyncSession, user_id: uuid.UUID) -> User | None:
    return await session.get(User, user_id)


def add_login_history(session: AsyncSession, entry: LoginHistory) -> None:
    session.add(entry)
