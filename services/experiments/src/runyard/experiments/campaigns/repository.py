"""Queries of campaigns and their trials (reading, listing and locking one campaign is the
service-wide ``runyard.experiments.repository``)."""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from runyard.experiments.models import HpoCampaign, HpoTrial, NasCampaign, NasTrial, TrainingRun
from runyard.experiments.repository import by_id
from runyard.experiments.tracking.repository.runs import run_metric
from runyard.shared.db import utcnow
from runyard.shared.pagination import cut, decode_cursor

# --- HPO -----------------------------------------------------------------------------------------


async def trials_of(session: AsyncSession, campaign_id: uuid.UUID) -> Sequence[HpoTrial]:
    return (
        await session.scalars(
            select(HpoTrial)
            .where(HpoTrial.campaign_id == campaign_id)
            .order_by(HpoTrial.number)
            .execution_options(populate_existing=True)
        )
    ).all()


async def campaign_of(session: AsyncSession, trial: HpoTrial) -> HpoCampaign:
    campaign = await session.get(HpoCampaign, trial.campaign_id)
    assert campaign is not None  # a trial goes with its campaign (ON DELETE CASCADE)
    return campaign


async def trial_of_experiment(session: AsyncSession, experiment_id: uuid.UUID) -> HpoTrial | None:
    trial: HpoTrial | None = await session.scalar(
        select(HpoTrial).where(HpoTrial.experiment_id == experiment_id)
    )
    return trial


async def lock_trial_of_experiment(
    session: AsyncSession, experiment_id: uuid.UUID
) -> tuple[HpoCampaign, HpoTrial] | None:
    """The campaign (locked) and trial of an experiment that is an HPO trial."""
    campaign_id = await session.scalar(
        select(HpoTrial.campaign_id).where(HpoTrial.experiment_id == experiment_id)
    )
    if campaign_id is None:
        return None
    campaign: HpoCampaign = (
        await session.execute(by_id(HpoCampaign, lock=True), {"row_id": campaign_id})
    ).scalar_one()
    trial = (
        await session.execute(
            select(HpoTrial)
            .where(HpoTrial.experiment_id == experiment_id)
            .execution_options(populate_existing=True)
        )
    ).scalar_one()
    return campaign, trial


async def intermediate_values(
    session: AsyncSession, campaign: HpoCampaign
) -> dict[int, dict[int, float]]:
    """The campaign metric per epoch of every trial's experiment (Optuna's reports)."""
    value = run_metric(campaign.metric)
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


async def lock_idle_timed_campaigns(session: AsyncSession, *, batch: int) -> Sequence[HpoCampaign]:
    """Running campaigns with a duration budget and no trial running, locked (others skipped)."""
    return (
        await session.scalars(
            select(HpoCampaign)
            .where(
                HpoCampaign.status == "running",
                HpoCampaign.budget["max_duration_seconds"].as_float().is_not(None),
                HpoCampaign.trials_completed == HpoCampaign.trials_started,
            )
            .limit(batch)
            .with_for_update(skip_locked=True)
            .execution_options(populate_existing=True)
        )
    ).all()


async def store_system_attrs(session: AsyncSession, trial_id: int, attrs: dict[str, Any]) -> None:
    await session.execute(
        update(HpoTrial)
        .where(HpoTrial.id == trial_id)
        .values(system_attrs=attrs, updated_at=utcnow())
    )


async def mark_pruned(session: AsyncSession, trial_id: int, step: int) -> None:
    """The first step at which the pruner said stop (a later answer does not move it)."""
    await session.execute(
        update(HpoTrial)
        .where(HpoTrial.id == trial_id, HpoTrial.pruned_at_step.is_(None))
        .values(pruned_at_step=step, updated_at=utcnow())
    )


# --- NAS -----------------------------------------------------------------------------------------


async def nas_trial_with_hash(
    session: AsyncSession, campaign_id: uuid.UUID, digest: str
) -> NasTrial | None:
    trial: NasTrial | None = await session.scalar(
        select(NasTrial).where(
            NasTrial.campaign_id == campaign_id, NasTrial.architecture_hash == digest
        )
    )
    return trial


async def best_architecture(session: AsyncSession, campaign: NasCampaign) -> dict[str, Any] | None:
    if campaign.best_trial_id is None:
        return None
    best = await session.get(NasTrial, campaign.best_trial_id)
    return best.architecture if best else None


def number_key(trial: NasTrial) -> tuple[int]:
    return (trial.trial_number,)


def accuracy_key(trial: NasTrial) -> tuple[float | None, int]:
    return trial.validation_accuracy, trial.trial_number


async def list_nas_trials(
    session: AsyncSession,
    campaign_id: uuid.UUID,
    *,
    order_by: str,
    limit: int,
    cursor: str | None,
) -> tuple[list[NasTrial], str | None]:
    """By trial number, or best first (``-validation_accuracy``: missing accuracies last)."""
    query = select(NasTrial).where(NasTrial.campaign_id == campaign_id)
    if order_by == "trial_number":
        after = decode_cursor(cursor, "nas_trials", int, variant=order_by)
        if after is not None:
            query = query.where(NasTrial.trial_number > after[0])
        query = query.order_by(NasTrial.trial_number)
        rows = (await session.scalars(query.limit(limit + 1))).all()
        return cut(rows, limit, "nas_trials", number_key, variant=order_by)
    # best first: offset-free keyset over (accuracy desc nulls last, number)
    position = decode_cursor(cursor, "nas_trials", (float, None), int, variant=order_by)
    if position is not None:
        accuracy, number = position
        if accuracy is None:
            query = query.where(
                NasTrial.validation_accuracy.is_(None), NasTrial.trial_number > number
            )
        else:
            query = query.where(
                (NasTrial.validation_accuracy < accuracy)
                | NasTrial.validation_accuracy.is_(None)
                | ((NasTrial.validation_accuracy == accuracy) & (NasTrial.trial_number > number))
            )
    query = query.order_by(NasTrial.validation_accuracy.desc().nulls_last(), NasTrial.trial_number)
    rows = (await session.scalars(query.limit(limit + 1))).all()
    return cut(rows, limit, "nas_trials", accuracy_key, variant=order_by)
