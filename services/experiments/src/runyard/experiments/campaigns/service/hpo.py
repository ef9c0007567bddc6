"""HPO campaigns, the ask side: ask/tell with Optuna over experiments.

``POST /hpo-campaigns/{id}/suggest`` asks the (rebuilt) study for a trial and creates a pending
experiment with its hyperparameters; the campaign row is locked meanwhile, so concurrent
suggestions get distinct trial numbers and never exceed the budget. Rebuilding the study and
asking it runs in a worker thread (the transaction, and so the lock, waits for it).

The result of a trial arrives as the experiment's own ``experiment.completed | failed |
cancelled | deleted`` event (consumed through the inbox, ``hpo_results``): the trial is told,
the best trial and the counters are updated, and when the budget is spent the campaign
completes with ``hpo_campaign.completed``.

Campaign statuses: ``pending`` (no suggestion yet) → ``running`` → ``completed``; ``cancelled``
by its owner at any time before completion (running trials still report, nothing is suggested).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from runyard.experiments import errors
from runyard.experiments.campaigns import repository, study
from runyard.experiments.campaigns.schemas import MAX_GRID_POINTS, HpoCampaignCreate
from runyard.experiments.campaigns.service import core
from runyard.experiments.datasets.service import usable_dataset
from runyard.experiments.models import Experiment, HpoCampaign, HpoTrial
from runyard.experiments.tracking.schemas import ExperimentCreate
from runyard.experiments.tracking.service.experiments import create_experiment, default_best_mode
from runyard.shared.contracts.experiments import HpoCampaignStarted
from runyard.shared.db import new_id, utcnow
from runyard.shared.identity import Principal, require_writer
from runyard.shared.logging import get_logger
from runyard.shared.outbox import emit

log = get_logger(__name__)


def invalid(loc: list[str | int], message: str) -> errors.ValidationFailed:
    return errors.ValidationFailed(message, loc=["body", *loc])


def hpo_fields(campaign: HpoCampaign) -> dict[str, Any]:
    """What HPO campaign events carry besides the core's fields."""
    return {"method": campaign.method, "metric": campaign.metric, "direction": campaign.direction}


def trials_budget(data: HpoCampaignCreate, space: dict[str, Any]) -> int:
    """``max_trials``, capped for a grid at its size (422 for a grid that cannot be searched)."""
    if data.method != "grid":
        return data.budget.max_trials
    try:
        size = study.grid_size(space)
    except study.SearchSpaceError as exc:
        raise invalid(["search_space", exc.param], str(exc)) from None
    if size > MAX_GRID_POINTS:
        raise invalid(["search_space"], f"the grid has {size} points (at most 100,000)")
    return min(data.budget.max_trials, size)


async def create_campaign(
    session: AsyncSession, *, principal: Principal, data: HpoCampaignCreate
) -> HpoCampaign:
    require_writer(principal)
    space = {name: param.model_dump() for name, param in data.search_space.items()}
    trials_total = trials_budget(data, space)
    if data.dataset_id is not None:
        await usable_dataset(session, principal, principal.user_id, data.dataset_id)
    hyperband = data.method == "hyperband"
    if data.pruner is not None and (data.pruner == "hyperband") != hyperband:
        raise invalid(["pruner"], "the hyperband method prunes with hyperband, and only it does")
    pruner = "hyperband" if hyperband else (data.pruner or "none")
    campaign = HpoCampaign(
        id=new_id(),
        owner_id=principal.user_id,
        name=data.name,
        description=data.description,
        method=data.method,
        status="pending",
        base_model_type=data.base_model_type,
        dataset_id=data.dataset_id,
        search_space=space,
        budget=data.budget.model_dump(),
        base_hyperparameters=data.base_hyperparameters,
        metric=data.metric,
        direction=data.direction
        or ("maximize" if default_best_mode(data.metric) == "max" else "minimize"),
        pruner=pruner,
        seed=data.seed if data.seed is not None else int(new_id().int % 2**31),
        trials_started=0,
        trials_completed=0,
        trials_total=trials_total,
        version=1,
    )
    await core.add_campaign(session, core.HPO, campaign)
    log.info("experiments.hpo.created", campaign_id=str(campaign.id), method=campaign.method)
    return campaign


async def list_trials(
    session: AsyncSession, *, principal: Principal, campaign_id: uuid.UUID
) -> Sequence[HpoTrial]:
    campaign = await core.get_campaign(
        session, core.HPO, principal=principal, campaign_id=campaign_id
    )
    return await repository.trials_of(session, campaign.id)


def check_open(campaign: HpoCampaign) -> None:
    if campaign.status not in ("pending", "running"):
        raise errors.CampaignFinished(campaign.status)


async def cancel_campaign(
    session: AsyncSession, *, principal: Principal, campaign_id: uuid.UUID
) -> HpoCampaign:
    campaign = await core.get_campaign(
        session, core.HPO, principal=principal, campaign_id=campaign_id, write=True
    )
    check_open(campaign)
    campaign.status = "cancelled"
    campaign.ended_at = utcnow()
    campaign.version += 1
    await session.flush()
    return campaign


def duration_spent(campaign: HpoCampaign) -> bool:
    limit = campaign.budget.get("max_duration_seconds")
    if limit is None or campaign.started_at is None:
        return False
    return utcnow() >= campaign.started_at + timedelta(seconds=limit)


async def suggest(
    session: AsyncSession, *, principal: Principal, campaign_id: uuid.UUID
) -> tuple[HpoCampaign, HpoTrial, Experiment]:
    campaign = await core.get_campaign(
        session, core.HPO, principal=principal, campaign_id=campaign_id, write=True
    )
    check_open(campaign)
    if campaign.trials_started >= campaign.trials_total:
        raise errors.BudgetSpent(
            f"All {campaign.trials_total} trials of the budget were suggested; the campaign "
            "completes when the running ones finish.",
            current_status=campaign.status,
            trials_started=campaign.trials_started,
            trials_total=campaign.trials_total,
        )
    if duration_spent(campaign):
        raise errors.BudgetSpent(
            "The campaign's max_duration_seconds has passed; it completes when the running "
            "trials finish.",
            current_status=campaign.status,
        )
    trials = await repository.trials_of(session, campaign.id)
    steps = await repository.intermediate_values(session, campaign)
    # off the event loop; the campaign stays locked meanwhile (by this transaction, which waits)
    asked = await asyncio.to_thread(study.suggest_trial, campaign, trials, steps)
    if asked.number != campaign.trials_started:
        raise AssertionError(f"trial {asked.number} asked, {campaign.trials_started} expected")
    owner = Principal(user_id=campaign.owner_id, role="user")
    experiment = await create_experiment(
        session,
        principal=owner,
        data=ExperimentCreate(
            name=f"{campaign.name[:230]}-trial-{asked.number}",
            model_type=campaign.base_model_type,
            dataset_id=campaign.dataset_id,
            hyperparameters={**campaign.base_hyperparameters, **asked.params},
            config={"hpo_campaign_id": str(campaign.id), "hpo_trial_number": asked.number},
            best_metric=campaign.metric,
            best_mode="max" if campaign.direction == "maximize" else "min",
        ),
    )
    experiment.hpo_campaign_id = campaign.id
    trial = HpoTrial(
        campaign_id=campaign.id,
        number=asked.number,
        experiment_id=experiment.id,
        params=asked.params,
        system_attrs=asked.system_attrs,
        state="running",
    )
    session.add(trial)
    campaign.trials_started += 1
    campaign.version += 1
    if campaign.status == "pending":
        campaign.status = "running"
        campaign.started_at = utcnow()
        payload = HpoCampaignStarted(
            **await core.event_fields(session, campaign),
            **hpo_fields(campaign),
            max_trials=campaign.trials_total,
        )
        await emit(session, payload, subject=campaign.id, sequence=campaign.version)
    await session.flush()
    log.info(
        "experiments.hpo.suggested",
        campaign_id=str(campaign.id),
        trial=asked.number,
        experiment_id=str(experiment.id),
    )
    return campaign, trial, experiment
