"""NAS campaigns: the search runs elsewhere (the owner's NAS tool) and records each evaluated
architecture as a trial here. An architecture is identified by a canonical hash of its JSON, so
evaluating the same architecture twice in a campaign is a 409 naming the existing trial. The
campaign keeps its best trial (highest validation accuracy, the earlier one on a tie) and
completes with ``nas_campaign.completed`` when it holds ``num_trials`` trials.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from runyard.experiments import listing, pagination, repository, service
from runyard.experiments.campaign_schemas import NasCampaignCreate, NasTrialCreate
from runyard.experiments.models import NasCampaign, NasTrial
from runyard.shared.contracts.experiments import NasCampaignCompleted
from runyard.shared.db import new_id, utcnow
from runyard.shared.events import make_event
from runyard.shared.http import ProblemError
from runyard.shared.identity import Principal, require_writer
from runyard.shared.logging import get_logger
from runyard.shared.outbox import add_event

log = get_logger(__name__)

SOURCE = "/runyard/experiments"


def canonical(value: Any) -> Any:
    """Integral floats as ints (``3.0`` and ``3`` are the same kernel size)."""
    if isinstance(value, dict):
        return {str(k): canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return [canonical(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def architecture_hash(architecture: dict[str, Any]) -> str:
    """SHA-256 of the architecture as canonical JSON: keys sorted, no whitespace, UTF-8."""
    text = json.dumps(
        canonical(architecture), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(text.encode()).hexdigest()


def name_taken(name: str) -> dict[str, ProblemError]:
    return {
        "uq_nas_campaigns_owner_id_name": repository.conflict(
            f"You already have a NAS campaign named {name!r}.", field="name"
        )
    }


async def create_campaign(
    session: AsyncSession, *, principal: Principal, data: NasCampaignCreate
) -> NasCampaign:
    require_writer(principal)
    if data.dataset_id is not None:
        await service.check_dataset(session, principal, principal.user_id, data.dataset_id)
    campaign = NasCampaign(
        id=new_id(),
        owner_id=principal.user_id,
        status="pending",
        trials_completed=0,
        version=1,
        **data.model_dump(),
    )
    async with repository.unique_or_conflict(session, name_taken(data.name)):
        session.add(campaign)
    return campaign


async def get_campaign(
    session: AsyncSession, *, principal: Principal, campaign_id: uuid.UUID, write: bool = False
) -> NasCampaign:
    campaign: NasCampaign = await listing.get_owned(
        session,
        NasCampaign,
        principal=principal,
        row_id=campaign_id,
        what="NAS campaign",
        write=write,
    )
    return campaign


async def list_campaigns(
    session: AsyncSession,
    *,
    principal: Principal,
    limit: int,
    cursor: str | None,
    status: str | None = None,
    owner_id: uuid.UUID | None = None,
) -> tuple[Sequence[NasCampaign], str | None]:
    return await listing.list_owned(
        session,
        NasCampaign,
        principal=principal,
        kind="nas",
        limit=limit,
        cursor=cursor,
        status=status,
        owner_id=owner_id,
    )


async def list_trials(
    session: AsyncSession,
    *,
    principal: Principal,
    campaign_id: uuid.UUID,
    limit: int,
    cursor: str | None,
    order_by: str = "trial_number",
) -> tuple[Sequence[NasTrial], str | None]:
    """By trial number, or best first (``-validation_accuracy``: missing accuracies last)."""
    campaign = await get_campaign(session, principal=principal, campaign_id=campaign_id)
    query = select(NasTrial).where(NasTrial.campaign_id == campaign.id)
    kind = f"nas_trials:{order_by}"
    after = pagination.decode_cursor(cursor, kind=kind)
    if order_by == "trial_number":
        if after is not None:
            if not isinstance(after.get("n"), int):
                raise pagination.invalid_cursor()
            query = query.where(NasTrial.trial_number > after["n"])
        query = query.order_by(NasTrial.trial_number)
    else:
        # best first: offset-free keyset over (accuracy desc nulls last, number)
        if after is not None:
            if not isinstance(after.get("n"), int):
                raise pagination.invalid_cursor()
            accuracy = after.get("a")
            if accuracy is None:
                query = query.where(
                    NasTrial.validation_accuracy.is_(None), NasTrial.trial_number > after["n"]
                )
            else:
                query = query.where(
                    (NasTrial.validation_accuracy < accuracy)
                    | NasTrial.validation_accuracy.is_(None)
                    | (
                        (NasTrial.validation_accuracy == accuracy)
                        & (NasTrial.trial_number > after["n"])
                    )
                )
        query = query.order_by(
            NasTrial.validation_accuracy.desc().nulls_last(), NasTrial.trial_number
        )
    rows = (await session.scalars(query.limit(limit + 1))).all()
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        next_cursor = pagination.encode_cursor(
            {"k": kind, "n": last.trial_number, "a": last.validation_accuracy}
        )
    return rows, next_cursor


async def add_trial(
    session: AsyncSession, *, principal: Principal, campaign_id: uuid.UUID, data: NasTrialCreate
) -> NasTrial:
    campaign = await get_campaign(session, principal=principal, campaign_id=campaign_id, write=True)
    if campaign.status == "completed":
        raise ProblemError(
            409,
            "Conflict",
            f"The campaign already holds its {campaign.num_trials} trials.",
            current_status=campaign.status,
        )
    digest = architecture_hash(data.architecture)
    existing = await session.scalar(
        select(NasTrial).where(
            NasTrial.campaign_id == campaign.id, NasTrial.architecture_hash == digest
        )
    )
    if existing is not None:
        raise repository.conflict(
            f"This architecture was evaluated before, as trial {existing.trial_number}.",
            existing_trial_id=str(existing.id),
            existing_trial_number=existing.trial_number,
            architecture_hash=digest,
        )
    trial = NasTrial(
        id=new_id(),
        campaign_id=campaign.id,
        trial_number=campaign.trials_completed,
        architecture_hash=digest,
        **data.model_dump(),
    )
    session.add(trial)
    campaign.trials_completed += 1
    campaign.version += 1
    if campaign.status == "pending":
        campaign.status = "running"
    accuracy = trial.validation_accuracy
    if accuracy is not None and (
        campaign.best_accuracy is None or accuracy > campaign.best_accuracy
    ):
        campaign.best_accuracy, campaign.best_trial_id = accuracy, trial.id
    await session.flush()
    if campaign.trials_completed >= campaign.num_trials:
        await complete(session, campaign)
    return trial


async def complete(session: AsyncSession, campaign: NasCampaign) -> None:
    campaign.status = "completed"
    campaign.ended_at = utcnow()
    campaign.version += 1
    best = await session.get(NasTrial, campaign.best_trial_id) if campaign.best_trial_id else None
    owner = await repository.get_user(session, campaign.owner_id)
    payload = NasCampaignCompleted(
        campaign_id=campaign.id,
        name=campaign.name,
        owner_id=campaign.owner_id,
        dataset_id=campaign.dataset_id,
        owner_username=owner.username if owner else None,
        owner_email=owner.email if owner else None,
        owner_full_name=owner.full_name if owner else None,
        search_algorithm=campaign.search_algorithm,
        num_trials=campaign.num_trials,
        trials_completed=campaign.trials_completed,
        best_trial_id=campaign.best_trial_id,
        best_accuracy=campaign.best_accuracy,
        best_architecture=best.architecture if best else None,
    )
    await session.flush()
    await add_event(
        session, make_event(payload, source=SOURCE, subject=campaign.id, sequence=campaign.version)
    )
    log.info("experiments.nas.completed", campaign_id=str(campaign.id))
