"""HPO campaigns, the tell side: trial results from the experiments' own events, the budget,
and the pruner's answers to the training loop (``hpo`` holds the campaigns and the ask side)."""

from __future__ import annotations

import asyncio
import math
import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from runyard.experiments import access
from runyard.experiments.campaigns import repository, study
from runyard.experiments.campaigns.schemas import PruneAnswer
from runyard.experiments.campaigns.service import core
from runyard.experiments.campaigns.service.hpo import duration_spent, hpo_fields
from runyard.experiments.models import HpoCampaign, HpoTrial
from runyard.experiments.tracking.service.experiments import get_visible_experiment
from runyard.shared.contracts.experiments import HpoCampaignCompleted
from runyard.shared.db import utcnow
from runyard.shared.identity import Principal
from runyard.shared.logging import get_logger

log = get_logger(__name__)


async def finish_trial(
    session: AsyncSession,
    *,
    experiment_id: uuid.UUID,
    status: str,
    final_metrics: dict[str, Any],
) -> HpoTrial | None:
    """Record the end of a trial's experiment (``status``: completed | failed | cancelled |
    deleted). A repeated or late report for a finished trial changes nothing."""
    found = await repository.lock_trial_of_experiment(session, experiment_id)
    if found is None:
        return None
    campaign, trial = found
    if trial.state != "running":
        return trial
    value = final_metrics.get(campaign.metric)
    usable = isinstance(value, int | float) and math.isfinite(value)
    if trial.pruned_at_step is not None:
        trial.state = "pruned"
    elif status == "completed" and usable:
        trial.state, trial.value = "complete", float(value)  # type: ignore[arg-type]
    else:
        trial.state = "fail"
    trial.finished_at = utcnow()
    core.count_trial(campaign)
    if trial.state == "complete" and core.is_better(
        campaign.direction, trial.value, campaign.best_value
    ):
        campaign.best_value = trial.value
        campaign.best_experiment_id = experiment_id if status != "deleted" else None
        campaign.best_params = trial.params
        accuracy = final_metrics.get("val_accuracy")
        campaign.best_accuracy = float(accuracy) if isinstance(accuracy, int | float) else None
    log.info(
        "experiments.hpo.trial_finished",
        campaign_id=str(campaign.id),
        trial=trial.number,
        state=trial.state,
        value=trial.value,
    )
    await session.flush()
    await complete_if_spent(session, campaign)
    return trial


async def complete_if_spent(session: AsyncSession, campaign: HpoCampaign) -> bool:
    """Complete a running campaign whose trial budget is used up, or whose duration passed
    with no trial still running."""
    if campaign.status != "running":
        return False
    if core.budget_spent(core.HPO, campaign):
        reason = "budget_trials"
    elif duration_spent(campaign) and campaign.trials_completed == campaign.trials_started:
        reason = "budget_duration"
    else:
        return False
    campaign.completion_reason = reason
    await core.complete(
        session,
        campaign,
        lambda fields: HpoCampaignCompleted(
            **fields,
            **hpo_fields(campaign),
            trials_completed=campaign.trials_completed,
            trials_total=campaign.trials_total,
            best_experiment_id=campaign.best_experiment_id,
            best_value=campaign.best_value,
            best_params=campaign.best_params or {},
            reason=reason,
        ),
    )
    log.info("experiments.hpo.completed", campaign_id=str(campaign.id), reason=reason)
    return True


async def complete_expired(session: AsyncSession, *, batch: int = 50) -> int:
    """Complete running campaigns whose duration budget passed and whose trials all ended
    (nothing else would: no trial result is coming). Returns how many completed."""
    done = 0
    for campaign in await repository.lock_idle_timed_campaigns(session, batch=batch):
        done += await complete_if_spent(session, campaign)
    return done


async def should_prune(
    session: AsyncSession, *, principal: Principal, experiment_id: uuid.UUID
) -> PruneAnswer:
    """The pruner's answer for the trial's latest reported epoch. A ``true`` answer to the
    experiment's owner is recorded: the trial counts as pruned when its experiment ends."""
    experiment = await get_visible_experiment(
        session, principal=principal, experiment_id=experiment_id
    )
    trial = await repository.trial_of_experiment(session, experiment.id)
    if trial is None:
        return PruneAnswer(
            experiment_id=experiment.id,
            should_prune=False,
            hpo_campaign_id=None,
            trial_number=None,
            step=None,
        )
    campaign = await repository.campaign_of(session, trial)
    answer = PruneAnswer(
        experiment_id=experiment.id,
        should_prune=False,
        hpo_campaign_id=campaign.id,
        trial_number=trial.number,
        step=None,
    )
    if trial.pruned_at_step is not None:
        return answer.model_copy(update={"should_prune": True, "step": trial.pruned_at_step})
    if trial.state != "running":
        return answer
    steps = await repository.intermediate_values(session, campaign)
    own = steps.get(trial.number)
    if not own:
        return answer
    trials = await repository.trials_of(session, campaign.id)
    step = max(own)
    decision = await asyncio.to_thread(study.decide_pruning, campaign, trials, steps, trial.number)
    prune = decision.prune
    if access.can_write(principal, experiment.owner_id):
        # the pruner's state lives in the trial's system attributes (Hyperband's rungs)
        attrs = decision.system_attrs
        if attrs != trial.system_attrs:
            await repository.store_system_attrs(session, trial.id, attrs)
        if prune:
            await repository.mark_pruned(session, trial.id, step)
            log.info("experiments.hpo.pruned", campaign_id=str(campaign.id), trial=trial.number)
    return answer.model_copy(update={"should_prune": prune, "step": step})
