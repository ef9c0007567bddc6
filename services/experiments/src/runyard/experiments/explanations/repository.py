"""Queries of explanations."""

from __future__ import annotations

import uuid

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from runyard.experiments.models import Explanation
from runyard.experiments.repository import newest_first


async def list_explanations(
    session: AsyncSession,
    experiment_id: uuid.UUID,
    *,
    limit: int,
    cursor: str | None,
    method: str | None = None,
    signal_id: str | None = None,
) -> tuple[list[Explanation], str | None]:
    """Newest first, optionally only one method and/or one signal."""
    query = select(Explanation).where(Explanation.experiment_id == experiment_id)
    if method is not None:
        query = query.where(Explanation.method == method)
    if signal_id is not None:
        query = query.where(Explanation.signal_id == signal_id)
    return await newest_first(
        session, query, Explanation, kind="explanations", limit=limit, cursor=cursor
    )


async def get_explanation(
    session: AsyncSession, experiment_id: uuid.UUID, explanation_id: uuid.UUID
) -> Explanation | None:
    explanation = await session.get(Explanation, explanation_id)
    if explanation is None or explanation.experiment_id != experiment_id:
        return None
    return explanation


async def delete_explanation(
    session: AsyncSession, experiment_id: uuid.UUID, explanation_id: uuid.UUID
) -> bool:
    """False when the experiment has no such explanation."""
    deleted = await session.execute(
        delete(Explanation)
        .where(Explanation.id == explanation_id, Explanation.experiment_id == experiment_id)
        .returning(Explanation.id)
    )
    return deleted.first() is not None
