from __future__ import annotations

import uuid
from typing import Any, Literal

from fastapi import APIRouter

from runyard.experiments.campaigns.api.common import add_campaign_routes
from runyard.experiments.campaigns.schemas import (
    HpoCampaignCreate,
    HpoCampaignOut,
    HpoTrialOut,
    PruneAnswer,
    Suggestion,
)
from runyard.experiments.campaigns.service import core, hpo, hpo_results
from runyard.experiments.tracking.schemas import ExperimentOut
from runyard.shared.identity import CurrentPrincipal
from runyard.shared.runtime import SessionDep

router = APIRouter(prefix="/api/v1/hpo-campaigns", tags=["hpo-campaigns"])
pruning = APIRouter(prefix="/api/v1/experiments", tags=["hpo-campaigns"])

CampaignStatus = Literal["pending", "running", "completed", "cancelled"]
CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"description": "the campaign is finished, or its budget is spent"}
}

add_campaign_routes(
    router,
    core.HPO,
    create=hpo.create_campaign,
    body_model=HpoCampaignCreate,
    out=HpoCampaignOut,
    statuses=CampaignStatus,
    create_doc="""A campaign searches `search_space` with `method` (grid, random, bayesian = TPE,
    hyperband = TPE with the Hyperband pruner) within `budget`, optimising `metric`.""",
)


@router.get("/{campaign_id}/trials", response_model=list[HpoTrialOut])
async def list_trials(
    campaign_id: uuid.UUID, session: SessionDep, principal: CurrentPrincipal
) -> list[HpoTrialOut]:
    """Every trial suggested so far, by number."""
    trials = await hpo.list_trials(session, principal=principal, campaign_id=campaign_id)
    return [HpoTrialOut.model_validate(t) for t in trials]


@router.post(
    "/{campaign_id}/suggest", status_code=201, response_model=Suggestion, responses=CONFLICT
)
async def suggest(
    campaign_id: uuid.UUID, session: SessionDep, principal: CurrentPrincipal
) -> Suggestion:
    """Ask for the next trial: creates a pending experiment (linked to the campaign) with the
    suggested hyperparameters. Train it, log its epochs, ask `should-prune` after each, and
    complete (or fail) it: the campaign learns the result from the experiment's event."""
    campaign, trial, experiment = await hpo.suggest(
        session, principal=principal, campaign_id=campaign_id
    )
    return Suggestion(
        campaign=HpoCampaignOut.model_validate(campaign),
        trial_number=trial.number,
        params=trial.params,
        experiment=ExperimentOut.model_validate(experiment),
    )


@router.post("/{campaign_id}/cancel", response_model=HpoCampaignOut, responses=CONFLICT)
async def cancel_campaign(
    campaign_id: uuid.UUID, session: SessionDep, principal: CurrentPrincipal
) -> HpoCampaignOut:
    """No further suggestions; trials already running still report their results."""
    campaign = await hpo.cancel_campaign(session, principal=principal, campaign_id=campaign_id)
    return HpoCampaignOut.model_validate(campaign)


@pruning.get("/{experiment_id}/should-prune", response_model=PruneAnswer)
async def should_prune(
    experiment_id: uuid.UUID, session: SessionDep, principal: CurrentPrincipal
) -> PruneAnswer:
    """For a training loop after each logged epoch: whether the campaign's pruner stops this
    trial now (`false` for an experiment that is no HPO trial). Stop training and cancel or
    fail the experiment when it says `true`; the trial then counts as pruned."""
    return await hpo_results.should_prune(session, principal=principal, experiment_id=experiment_id)
