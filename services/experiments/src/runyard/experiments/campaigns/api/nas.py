from __future__ import annotations

import uuid
from typing import Literal

from fastapi import APIRouter

from runyard.experiments.campaigns.api.common import add_campaign_routes
from runyard.experiments.campaigns.schemas import (
    NasCampaignCreate,
    NasCampaignOut,
    NasTrialCreate,
    NasTrialOut,
)
from runyard.experiments.campaigns.service import core, nas
from runyard.shared.identity import CurrentPrincipal
from runyard.shared.pagination import DEFAULT_LIMIT, CursorParam, Limit, Page
from runyard.shared.runtime import SessionDep

router = APIRouter(prefix="/api/v1/nas-campaigns", tags=["nas-campaigns"])

CampaignStatus = Literal["pending", "running", "completed"]

add_campaign_routes(
    router,
    core.NAS,
    create=nas.create_campaign,
    body_model=NasCampaignCreate,
    out=NasCampaignOut,
    statuses=CampaignStatus,
)


@router.post(
    "/{campaign_id}/trials",
    status_code=201,
    response_model=NasTrialOut,
    responses={
        409: {
            "description": "the architecture was evaluated before (`existing_trial_id`), or "
            "the campaign already holds its trials"
        }
    },
)
async def add_trial(
    campaign_id: uuid.UUID, body: NasTrialCreate, session: SessionDep, principal: CurrentPrincipal
) -> NasTrialOut:
    """Record an evaluated architecture; the campaign's `num_trials`-th completes it."""
    trial = await nas.add_trial(session, principal=principal, campaign_id=campaign_id, data=body)
    return NasTrialOut.model_validate(trial)


@router.get("/{campaign_id}/trials", response_model=Page[NasTrialOut])
async def list_trials(
    campaign_id: uuid.UUID,
    session: SessionDep,
    principal: CurrentPrincipal,
    order_by: Literal["trial_number", "-validation_accuracy"] = "trial_number",
    limit: Limit = DEFAULT_LIMIT,
    cursor: CursorParam = None,
) -> Page[NasTrialOut]:
    rows, next_cursor = await nas.list_trials(
        session,
        principal=principal,
        campaign_id=campaign_id,
        limit=limit,
        cursor=cursor,
        order_by=order_by,
    )
    return Page[NasTrialOut](
        items=[NasTrialOut.model_validate(r) for r in rows], next_cursor=next_cursor
    )
