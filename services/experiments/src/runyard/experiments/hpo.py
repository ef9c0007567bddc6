"""HPO campaigns: ask/tell with Optuna over experiments.

``POST /hpo-campaigns/{id}/suggest`` asks the (rebuilt) study for a trial and creates a pending
experiment with its hyperparameters; the campaign row is locked meanwhile, so concurrent
suggestions get distinct trial numbers and never exceed the budget. The result of a trial arrives
as the experiment's own ``experiment.completed | failed | cancelled | deleted`` event (consumed
through the inbox): the trial is told, the best trial and the counters are updated, and when the
budget is spent the campaign completes with ``hpo_campaign.completed``.

Campaign statuses: ``pending`` (no suggestion yet) → ``running`` → ``completed``; ``cancelled``
by its owner at any time before completion (running trials still report, nothing is suggested).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from runyard.experiments import bookkeeping, hpo_study, listing, repository, service
from runyard.experiments.campaign_schemas import MAX_GRID_POINTS, HpoCampaignCreate
from runyard.experiments.models import Experiment, HpoCampaign, HpoTrial, TrainingRun
from runyard.experiments.schemas import ExperimentCreate
from runyard.shared.contracts.experiments import HpoCampaignStarted
from runyard.shared.db import new_id, utcnow
from runyard.shared.events import EventPayload, make_event
from runyard.shared.http import ProblemError
from runyard.shared.identity import Principal, require_writer
from runyard.shared.logging import get_logger
from runyard.shared.outbox import add_event

log = get_logger(__name__)

SOURCE = "/runyard/experiments"


def invalid(loc: list[str | int], message: str) -> ProblemError:
    return ProblemError(
        422,
        "Validation failed",
        message,
        errors=[{"loc": ["body", *loc], "msg": message, "type": "value_error"}],
    )


def name_taken(name: str) -> dict[str, ProblemError]:
    return {
        "uq_hpo_campaigns_owner_id_name": repository.conflict(
            f"You already have an HPO campaign named {name!r}.", field="name"
        )
    }


# --- events --------------------------------------------------------------------------------------


async def fields(session: AsyncSession, campaign: HpoCampaign) -> dict[str, Any]:
    owner = await repository.get_user(session, campaign.owner_id)
    return {
        "campaign_id": campaign.id,
        "name": campaign.name,
        "owner_id": campaign.owner_id,
        "dataset_id": campaign.dataset_id,
        "owner_username": owner.username if owner else None,
        "owner_email": owner.email if owner else None,
        "owner_full_name": owner.full_name if owner else None,
        "method": campaign.method,
        "metric": campaign.metric,
        "direction": campaign.direction,
    }


async def publish(session: AsyncSession, campaign: HpoCampaign, payload: EventPayload) -> None:
    await add_event(
        session, make_event(payload, source=SOURCE, subject=campaign.id, sequence=campaign.version)
    )


# --- create, read, cancel ------------------------------------------------------------------------


async def create_campaign(
    session: AsyncSession, *, principal: Principal, data: HpoCampaignCreate
) -> HpoCampaign:
    require_writer(principal)
    space = {name: param.model_dump() for name, param in data.search_space.items()}
    trials_total = data.budget.max_trials
    if data.method == "grid":
        try:
            size = hpo_study.grid_size(space)
        except hpo_study.SearchSpaceError as exc:
            raise invalid(["search_space", exc.param], str(exc)) from None
        if size > MAX_GRID_POINTS:
            raise invalid(["search_space"], f"the grid has {size} points (at most 100,000)")
        trials_total = min(trials_total, size)
    if data.dataset_id is not None:
        await service.check_dataset(session, principal, principal.user_id, data.dataset_id)
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
        or ("maximize" if service.default_best_mode(data.metric) == "max" else "minimize"),
        pruner=pruner,
        seed=data.seed if data.seed is not None else int(new_id().int % 2**31),
        trials_started=0,
        trials_completed=0,
        trials_total=trials_total,
        version=1,
    )
    async with repository.unique_or_conflict(session, name_taken(data.name)):
        session.add(campaign)
    log.info("experiments.hpo.created", campaign_id=str(campaign.id), method=campaign.method)
    return campaign


async def get_campaign(
    session: AsyncSession, *, principal: Principal, campaign_id: uuid.UUID, write: bool = False
) -> HpoCampaign:
    campaign: HpoCampaign = await listing.get_owned(
        session,
        HpoCampaign,
        principal=principal,
        row_id=campaign_id,
        what="HPO campaign",
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
) -> tuple[Sequence[HpoCampaign], str | None]:
    return await listing.list_owned(
        session,
        HpoCampaign,
        principal=principal,
        kind="hpo",
        limit=limit,
        cursor=cursor,
        status=status,
        owner_id=owner_id,
    )


async def list_trials(
    session: AsyncSession, *, principal: Principal, campaign_id: uuid.UUID
) -> Sequence[HpoTrial]:
    campaign = await get_campaign(session, principal=principal, campaign_id=campaign_id)
    return await trials_of(session, campaign.id)


async def trials_of(session: AsyncSession, campaign_id: uuid.UUID) -> Sequence[HpoTrial]:
    return (
        await session.scalars(
            select(HpoTrial)
            .where(HpoTrial.campaign_id == campaign_id)
            .order_by(HpoTrial.number)
            .execution_options(populate_existing=True)
        )
    ).all()


async def cancel_campaign(
    session: AsyncSession, *, principal: Principal, campaign_id: uuid.UUID
) -> HpoCampaign:
    campaign = await get_campaign(session, principal=principal, campaign_id=campaign_id, write=True)
    if campaign.status not in ("pending", "running"):
        raise finished(campaign)
    campaign.status = "cancelled"
    campaign.ended_at = utcnow()
    campaign.version += 1
    await session.flush()
    return campaign


def finished(campaign: HpoCampaign) -> ProblemError:
    return ProblemError(
        409,
        "Conflict",
        f"The campaign is {campaign.status}.",
        current_status=campaign.status,
    )


# --- ask -----------------------------------------------------------------------------------------


def duration_spent(campaign: HpoCampaign) -> bool:
    limit = campaign.budget.get("max_duration_seconds")
    if limit is None or campaign.started_at is None:
        return False
    return utcnow() >= campaign.started_at + timedelta(seconds=limit)


async def intermediate_values(
    session: AsyncSession, campaign: HpoCampaign
) -> dict[int, dict[int, float]]:
    """The campaign metric per epoch of every trial's experiment (Optuna's reports)."""
    value = bookkeeping.run_metric(campaign.metric)
    rows = await session.execute(
        select(HpoTrial.number, TrainingRun.epoch, value)
        .join(TrainingRun, TrainingRun.experiment_id == HpoTrial.experiment_id)
        .where(HpoTrial.campaign_id == campaign.id, value.is_not(None))
    )
    found: dict[int, dict[int, float]] = {}
    for number, epoch, metric in rows:
        if math.isfinite(metric):
            found.setdefault(number, {})[epoch] = float(metric)
    return found


async def rebuilt_study(session: AsyncSession, campaign: HpoCampaign) -> hpo_study.RebuiltStudy:
    trials = await trials_of(session, campaign.id)
    return hpo_study.rebuild(campaign, trials, await intermediate_values(session, campaign))


async def suggest(
    session: AsyncSession, *, principal: Principal, campaign_id: uuid.UUID
) -> tuple[HpoCampaign, HpoTrial, Experiment]:
    campaign = await get_campaign(session, principal=principal, campaign_id=campaign_id, write=True)
    if campaign.status not in ("pending", "running"):
        raise finished(campaign)
    if campaign.trials_started >= campaign.trials_total:
        raise ProblemError(
            409,
            "Budget spent",
            f"All {campaign.trials_total} trials of the budget were suggested; the campaign "
            "completes when the running ones finish.",
            current_status=campaign.status,
            trials_started=campaign.trials_started,
            trials_total=campaign.trials_total,
        )
    if duration_spent(campaign):
        raise ProblemError(
            409,
            "Budget spent",
            "The campaign's max_duration_seconds has passed; it completes when the running "
            "trials finish.",
            current_status=campaign.status,
        )
    asked = hpo_study.ask(await rebuilt_study(session, campaign), campaign)
    if asked.number != campaign.trials_started:
        raise AssertionError(f"trial {asked.number} asked, {campaign.trials_started} expected")
    owner = Principal(user_id=campaign.owner_id, role="user")
    experiment = await service.create_experiment(
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
        await publish(
            session,
            campaign,
            HpoCampaignStarted(**await fields(session, campaign), max_trials=campaign.trials_total),
        )
    await session.flush()
    log.info(
        "experiments.hpo.suggested",
        campaign_id=str(campaign.id),
        trial=asked.number,
        experiment_id=str(experiment.id),
    )
    return campaign, trial, experiment
