"""XAI results of an experiment (SHAP values, LIME weights, integrated gradients, Grad-CAM maps
...), one row per explanation of a signal. They belong to the experiment: who may change it may
add and delete them, who may read it may read them."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from runyard.experiments import listing, service
from runyard.experiments.campaign_schemas import ExplanationCreate
from runyard.experiments.models import Explanation
from runyard.shared.db import new_id
from runyard.shared.http import ProblemError
from runyard.shared.identity import Principal


async def add_explanation(
    session: AsyncSession,
    *,
    principal: Principal,
    experiment_id: uuid.UUID,
    data: ExplanationCreate,
    max_bytes: int,
) -> Explanation:
    size = len(json.dumps(data.explanation_data, separators=(",", ":")).encode())
    if size > max_bytes:
        raise ProblemError(
            413,
            "Content Too Large",
            f"explanation_data is {size} bytes as JSON; at most {max_bytes} are stored. Put "
            "large maps in a file and give its file_path.",
            max_bytes=max_bytes,
        )
    experiment = await service.get_writable_experiment(
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
) -> tuple[Sequence[Explanation], str | None]:
    """Newest first, optionally only one method and/or one signal."""
    experiment = await service.get_visible_experiment(
        session, principal=principal, experiment_id=experiment_id
    )
    query = select(Explanation).where(Explanation.experiment_id == experiment.id)
    if method is not None:
        query = query.where(Explanation.method == method)
    if signal_id is not None:
        query = query.where(Explanation.signal_id == signal_id)
    return await listing.newest_first(
        session, query, Explanation, kind="explanations", limit=limit, cursor=cursor
    )


async def get_explanation(
    session: AsyncSession,
    *,
    principal: Principal,
    experiment_id: uuid.UUID,
    explanation_id: uuid.UUID,
) -> Explanation:
    experiment = await service.get_visible_experiment(
        session, principal=principal, experiment_id=experiment_id
    )
    explanation = await session.get(Explanation, explanation_id)
    if explanation is None or explanation.experiment_id != experiment.id:
        raise ProblemError(404, "Not Found", "No such explanation.")
    return explanation


async def delete_explanation(
    session: AsyncSession,
    *,
    principal: Principal,
    experiment_id: uuid.UUID,
    explanation_id: uuid.UUID,
) -> None:
    experiment = await service.get_writable_experiment(
        session, principal=principal, experiment_id=experiment_id
    )
    deleted = await session.execute(
        delete(Explanation)
        .where(Explanation.id == explanation_id, Explanation.experiment_id == experiment.id)
        .returning(Explanation.id)
    )
    if deleted.first() is None:
        raise ProblemError(404, "Not Found", "No such explanation.")
