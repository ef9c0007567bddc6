from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response

from runyard.experiments.deps import SettingsDep
from runyard.experiments.explanations import service
from runyard.experiments.explanations.schemas import (
    ExplanationCreate,
    ExplanationMethod,
    ExplanationOut,
)
from runyard.shared.identity import CurrentPrincipal
from runyard.shared.pagination import DEFAULT_LIMIT, CursorParam, Limit, Page
from runyard.shared.runtime import SessionDep

router = APIRouter(prefix="/api/v1/experiments", tags=["explanations"])


@router.post(
    "/{experiment_id}/explanations",
    status_code=201,
    response_model=ExplanationOut,
    responses={413: {"description": "explanation_data larger than the service's limit"}},
)
async def add_explanation(
    experiment_id: uuid.UUID,
    body: ExplanationCreate,
    session: SessionDep,
    principal: CurrentPrincipal,
    settings: SettingsDep,
) -> ExplanationOut:
    """Store an explanation (`explanation_data` at most `EXPERIMENTS_EXPLANATION_MAX_BYTES` as
    JSON, 1 MiB by default; larger results go in a file named by `file_path`)."""
    explanation = await service.add_explanation(
        session,
        principal=principal,
        experiment_id=experiment_id,
        data=body,
        max_bytes=settings.explanation_max_bytes,
    )
    return ExplanationOut.model_validate(explanation)


@router.get("/{experiment_id}/explanations", response_model=Page[ExplanationOut])
async def list_explanations(
    experiment_id: uuid.UUID,
    session: SessionDep,
    principal: CurrentPrincipal,
    method: ExplanationMethod | None = None,
    signal_id: Annotated[str | None, Query(max_length=255)] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: CursorParam = None,
) -> Page[ExplanationOut]:
    rows, next_cursor = await service.list_explanations(
        session,
        principal=principal,
        experiment_id=experiment_id,
        limit=limit,
        cursor=cursor,
        method=method,
        signal_id=signal_id,
    )
    return Page[ExplanationOut](
        items=[ExplanationOut.model_validate(r) for r in rows], next_cursor=next_cursor
    )


@router.get("/{experiment_id}/explanations/{explanation_id}", response_model=ExplanationOut)
async def get_explanation(
    experiment_id: uuid.UUID,
    explanation_id: uuid.UUID,
    session: SessionDep,
    principal: CurrentPrincipal,
) -> ExplanationOut:
    explanation = await service.get_explanation(
        session, principal=principal, experiment_id=experiment_id, explanation_id=explanation_id
    )
    return ExplanationOut.model_validate(explanation)


@router.delete("/{experiment_id}/explanations/{explanation_id}", status_code=204)
async def delete_explanation(
    experiment_id: uuid.UUID,
    explanation_id: uuid.UUID,
    session: SessionDep,
    principal: CurrentPrincipal,
) -> Response:
    await service.delete_explanation(
        session, principal=principal, experiment_id=experiment_id, explanation_id=explanation_id
    )
    return Response(status_code=204)
