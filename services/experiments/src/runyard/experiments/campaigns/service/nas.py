"""NAS campaigns: the search runs elsewhere (the owner's NAS tool) and records each evaluated
architecture as a trial here. An architecture is identified by a canonical hash of its JSON, so
evaluating the same architecture twice in a campaign is a 409 naming the existing trial. The
campaign keeps its best trial (highest validation accuracy, the earlier one on a tie) and
completes with ``nas_campaign.completed`` when it holds ``num_trials`` trials. Each trial is
announced by ``nas_trial.completed`` in its own transaction (before the completion, when it is
the last), which the console's campaign page follows live.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from runyard.experiments import errors
from runyard.experiments.campaigns import repository
from runyard.experiments.campaigns.schemas import NasCampaignCreate, NasTrialCreate
from runyard.experiments.campaigns.service import core
from runyard.experiments.datasets.service import usable_dataset
from runyard.experiments.models import NasCampaign, NasTrial
from runyard.shared.contracts.experiments import NasCampaignCompleted, NasTrialCompleted
from runyard.shared.db import new_id
from runyard.shared.identity import Principal, require_writer
from runyard.shared.logging import get_logger
from runyard.shared.outbox import emit

log = get_logger(__name__)


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


async def create_campaign(
    session: AsyncSession, *, principal: Principal, data: NasCampaignCreate
) -> NasCampaign:
    require_writer(principal)
    if data.dataset_id is not None:
        await usable_dataset(session, principal, principal.user_id, data.dataset_id)
    campaign = NasCampaign(
        id=new_id(),
        owner_id=principal.user_id,
        status="pending",
        trials_completed=0,
        version=1,
        **data.model_dump(),
    )
    await core.add_campaign(session, core.NAS, campaign)
    return campaign


async def list_trials(
    session: AsyncSession,
    *,
    principal: Principal,
    campaign_id: uuid.UUID,
    limit: int,
    cursor: str | None,
    order_by: str = "trial_number",
) -> tuple[list[NasTrial], str | None]:
    """By trial number, or best first (``-validation_accuracy``: missing accuracies last)."""
    campaign = await core.get_campaign(
        session, core.NAS, principal=principal, campaign_id=campaign_id
    )
    return await repository.list_nas_trials(
        session, campaign.id, order_by=order_by, limit=limit, cursor=cursor
    )


async def add_trial(
    session: AsyncSession, *, principal: Principal, campaign_id: uuid.UUID, data: NasTrialCreate
) -> NasTrial:
    campaign = await core.get_campaign(
        session, core.NAS, principal=principal, campaign_id=campaign_id, write=True
    )
    if campaign.status == "completed":
        raise errors.CampaignFull(campaign.num_trials, campaign.status)
    digest = architecture_hash(data.architecture)
    existing = await repository.nas_trial_with_hash(session, campaign.id, digest)
    if existing is not None:
        raise errors.ArchitectureEvaluated(str(existing.id), existing.trial_number, digest)
    trial = NasTrial(
        id=new_id(),
        campaign_id=campaign.id,
        trial_number=campaign.trials_completed,
        architecture_hash=digest,
        **data.model_dump(),
    )
    session.add(trial)
    core.count_trial(campaign)
    if campaign.status == "pending":
        campaign.status = "running"
    is_best = core.is_better("maximize", trial.validation_accuracy, campaign.best_accuracy)
    if is_best:
        campaign.best_accuracy, campaign.best_trial_id = trial.validation_accuracy, trial.id
    await session.flush()
    spent = core.budget_spent(core.NAS, campaign)
    await emit(
        session,
        NasTrialCompleted(
            **await core.event_fields(session, campaign),
            trial_id=trial.id,
            trial_number=trial.trial_number,
            validation_accuracy=trial.validation_accuracy,
            validation_loss=trial.validation_loss,
            is_best=is_best,
            best_accuracy=campaign.best_accuracy,
            trials_completed=campaign.trials_completed,
            num_trials=campaign.num_trials,
            campaign_status="completed" if spent else campaign.status,
        ),
        subject=campaign.id,
        sequence=campaign.version,
    )
    if spent:
        await complete(session, campaign)
    return trial


async def complete(session: AsyncSession, campaign: NasCampaign) -> None:
    best_architecture = await repository.best_architecture(session, campaign)
    await core.complete(
        session,
        campaign,
        lambda fields: NasCampaignCompleted(
            **fields,
            search_algorithm=campaign.search_algorithm,
            num_trials=campaign.num_trials,
            trials_completed=campaign.trials_completed,
            best_trial_id=campaign.best_trial_id,
            best_accuracy=campaign.best_accuracy,
            best_architecture=best_architecture,
        ),
    )
    log.info("experiments.nas.completed", campaign_id=str(campaign.id))
