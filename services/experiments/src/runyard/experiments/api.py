from __future__ import annotations

import uuid

from fastapi import APIRouter

from runyard.experiments import service
from runyard.experiments.schemas import ExperimentComplete, ExperimentCreate, ExperimentOut
from runyard.shared.identity import CurrentPrincipal, require_writer
from runyard.shared.runtime import SessionDep

router = APIRouter(prefix="/api/v1/experiments", tags=["experiments"])


@router.post("", status_code=201, response_model=ExperimentOut)
async def create_experiment(
    body: ExperimentCreate, session: SessionDep, principal: CurrentPrincipal
) -> ExperimentOut:
    experiment = await service.create_experiment(
        session, principal=require_writer(principal), data=body
    )
    return ExperimentOut.model_validate(experiment)


@router.get("/{experiment_id}", response_model=ExperimentOut)
async def get_experiment(
    experiment_id: uuid.UUID, session: SessionDep, principal: CurrentPrincipal
) -> ExperimentOut:
    experiment = await service.get_visible_experiment(
        session, principal=principal, experiment_id=experiment_id
    )
    return ExperimentOut.model_validate(experiment)


@router.post("/{experiment_id}/complete", response_model=ExperimentOut)
async def complete_experiment(
    experiment_id: uuid.UUID,
    session: SessionDep,
    principal: CurrentPrincipal,
    body: ExperimentComplete | None = None,
) -> ExperimentOut:
    experiment = await service.complete_experiment(
        session,
        principal=require_writer(principal),
        experiment_id=experiment_id,
        data=body or ExperimentComplete(),
    )
    return ExperimentOut.model_validate(experiment)
