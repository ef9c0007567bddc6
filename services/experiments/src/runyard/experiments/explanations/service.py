"""Explanation use cases, under the ownership of their experiment."""

from __future__ import annotations

import json
import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from runyard.experiments import errors
from runyard.experiments.explanations import repository
from runyard.experiments.explanations.schemas import ExplanationCreate
from runyard.experiments.models import Explanation
from runyard.experiments.tracking.service.experiments import (
    get_visible_experiment,
    get_writable_experiment,
)
from runyard.shared.db import new_id
from runyard.shared.identity import Principal


async def add_explanation(
    session: AsyncSession,
    *,
    principal: Principal,
    experiment_id: uuid.UUID,
    data: ExplanationCreate,
    max_bytes: int,
) -> Explanation:
    """413 when ``explanation_data`` is more than ``max_bytes`` as JSON."""
    size = len(json.dumps(data.explanation_data, separators=(",", ":")).encode())
    if size > max_bytes:
        raise errors.ExplanationTooLarge(size, max_bytes)
    experiment = await get_writable_experiment(
        session, principal=principal, experiment_id=experiment_id
    )
    explanation = Explanation(id=new_id(), experiment_id=experiment.id, **data.model_dump())
    session.add(explanation)
    await session.flush()
    return explanation


async def list_explanations(
    session: AsyncSession,
    *,
    principal: Principal,
    experiment_id: uuid.UUID,
    limit: int,
    cursor: str | None,
    method: str | None = None,
    signal_id: str | None = None,
) -> tuple[list[Explanation], str | None]:
    experiment = await get_visible_experiment(
        session, principal=principal, experiment_id=experiment_id
    )
    return await repository.list_explanations(
        session, experiment.id, limit=limit, cursor=cursor, method=method, signal_id=signal_id
    )


async def get_explanation(
    session: AsyncSession,
    *,
    principal: Principal,
    experiment_id: uuid.UUID,
    explanation_id: uuid.UUID,
) -> Explanation:
    experiment = await get_visible_experiment(
        session, principal=principal, experiment_id=experiment_id
    )
    explanation = await repository.get_explanation(session, experiment.id, explanation_id)
    if explanation is None:
        raise errors.NotFound("explanation")
    return explanation


async def delete_explanation(
    session: AsyncSession,
    *,
    principal: Principal,
    experiment_id: uuid.UUID,
    explanation_id: uuid.UUID,
) -> None:
    experiment = await get_writable_experiment(
        session, principal=principal, experiment_id=experiment_id
    )
    if not await repository.delete_explanation(session, experiment.id, explanation_id):
        raise errors.NotFound("explanation")
