"""The campaign core HPO and NAS share.

A campaign is an owned row (read, listed newest first and locked under the access rules) with a
unique name per owner, a budget of trials counted as they end, the best trial so far, and a
completion that announces itself: ``pending`` → ``running`` → ``completed`` (HPO campaigns may
also be ``cancelled`` by their owner).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from runyard.experiments import errors, users
from runyard.experiments.models import HpoCampaign, NasCampaign
from runyard.experiments.repository import get_owned, list_owned, unique_or_conflict
from runyard.experiments.tracking.service.bookkeeping import better
from runyard.shared.db import utcnow
from runyard.shared.events import EventPayload
from runyard.shared.identity import Principal
from runyard.shared.outbox import emit

Campaign = TypeVar("Campaign", HpoCampaign, NasCampaign)


@dataclass(frozen=True)
class CampaignKind(Generic[Campaign]):
    model: type[Campaign]
    #: as the errors name it ("No such HPO campaign.", "You already have an HPO campaign ...")
    what: str
    article: str
    #: the ``kind`` of its list's cursors
    cursor: str
    #: the trials of the budget: the campaign completes when this many have ended
    budget: Callable[[Campaign], int]


HPO: CampaignKind[HpoCampaign] = CampaignKind(
    HpoCampaign, "HPO campaign", "an", "hpo", lambda campaign: campaign.trials_total
)
NAS: CampaignKind[NasCampaign] = CampaignKind(
    NasCampaign, "NAS campaign", "a", "nas", lambda campaign: campaign.num_trials
)


async def add_campaign(
    session: AsyncSession, kind: CampaignKind[Campaign], campaign: Campaign
) -> None:
    """Store a new campaign; 409 if its owner has one of this kind with the same name."""
    constraint = f"uq_{kind.model.__tablename__}_owner_id_name"
    taken = errors.NameTaken(f"{kind.article} {kind.what}", campaign.name)
    async with unique_or_conflict(session, {constraint: taken}):
        session.add(campaign)


async def get_campaign(
    session: AsyncSession,
    kind: CampaignKind[Campaign],
    *,
    principal: Principal,
    campaign_id: uuid.UUID,
    write: bool = False,
) -> Campaign:
    """The campaign if the caller may read it (``write``: change it, locked); else 403/404."""
    return await get_owned(
        session, kind.model, campaign_id, principal=principal, what=kind.what, write=write
    )


async def list_campaigns(
    session: AsyncSession,
    kind: CampaignKind[Campaign],
    *,
    principal: Principal,
    limit: int,
    cursor: str | None,
    status: str | None = None,
    owner_id: uuid.UUID | None = None,
) -> tuple[list[Campaign], str | None]:
    """The campaigns the caller may see, newest first."""
    return await list_owned(
        session,
        kind.model,
        principal=principal,
        kind=kind.cursor,
        limit=limit,
        cursor=cursor,
        status=status,
        owner_id=owner_id,
    )


def count_trial(campaign: HpoCampaign | NasCampaign) -> None:
    """One more trial of the budget has ended."""
    campaign.trials_completed += 1
    campaign.version += 1


def budget_spent(kind: CampaignKind[Campaign], campaign: Campaign) -> bool:
    return campaign.trials_completed >= kind.budget(campaign)


def is_better(direction: str, value: float | None, best: float | None) -> bool:
    """Whether a trial's value beats the campaign's best so far: a trial without one never
    does, and on a tie the earlier trial stays the best."""
    mode = "max" if direction == "maximize" else "min"
    return value is not None and better(mode, value, best)


async def event_fields(
    session: AsyncSession, campaign: HpoCampaign | NasCampaign
) -> dict[str, Any]:
    """The fields every campaign event carries."""
    return {
        "campaign_id": campaign.id,
        "name": campaign.name,
        "owner_id": campaign.owner_id,
        "dataset_id": campaign.dataset_id,
        **await users.owner_fields(session, campaign.owner_id),
    }


async def complete(
    session: AsyncSession,
    campaign: HpoCampaign | NasCampaign,
    event: Callable[[dict[str, Any]], EventPayload],
) -> None:
    """Complete the campaign and emit ``event`` (made from the campaign's event fields)."""
    campaign.status = "completed"
    campaign.ended_at = utcnow()
    campaign.version += 1
    await session.flush()
    payload = event(await event_fields(session, campaign))
    await emit(session, payload, subject=campaign.id, sequence=campaign.version)
