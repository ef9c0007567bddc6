from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Query

from runyard.experiments import nas
from runyard.experiments.campaign_schemas import (
    NasCampaignCreate,
    NasCampaignOut,
    NasTrialCreate,
    NasTrialOut,
)
from runyard.experiments.pagination import DEFAULT_LIMIT, Cursor, Limit
from runyard.experiments.schemas import Page
from runyard.shared.identity import CurrentPrincipal
from runyard.shared.runtime import SessionDep

router = APIRouter(prefix="/api/v1/nas-campaigns", tags=["nas-campaigns"])

CampaignStatus = Literal["pending", "running", "completed"]


@router.post("", status_code=201, response_model=NasCampaignOut)
async def create_campaign(
    body: NasCampaignCreate, session: SessionDep, principal: CurrentPrincipal
) -> NasCampaignOut:
    campaign = await nas.create_campaign(session, principal=principal, data=body)
    return NasCampaignOut.model_validate(campaign)


@router.get("", response_model=Page[NasCampaignOut])
async def list_campaigns(
    session: SessionDep,
    principal: CurrentPrincipal,
    status: CampaignStatus | None = None,
    owner_id: Annotated[
        uuid.UUID | None, Query(description="admins and viewers: only this owner's campaigns")
    ] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[NasCampaignOut]:
    rows, next_cursor = await nas.list_campaigns(
        session, principal=principal, limit=limit, cursor=cursor, status=status, owner_id=owner_id
    )
    return Page[NasCampaignOut](
        items=[NasCampaignOut.model_validate(r) for r in rows], next_cursor=next_cursor
    )


@router.get("/{campaign_id}", response_model=NasCampaignOut)
async def get_campaign(
    campaign_id: uuid.UUID, session: SessionDep, principal: CurrentPrincipal
) -> NasCampaignOut:
    campaign = await nas.get_campaign(session, principal=principal, campaign_id=campaign_id)
    return NasCampaignOut.model_validate(campaign)


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
    cursor: Cursor = None,
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
