"""The downsampled history read: per bucket of epochs the min, max and last value of each
metric, for charts of long trainings (``repository.history``)."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from runyard.experiments.tracking.repository import history as repository
from runyard.experiments.tracking.repository.history import History
from runyard.experiments.tracking.service.experiments import get_visible_experiment
from runyard.shared.identity import Principal

#: metrics one read returns at most
MAX_METRICS = 20


def default_metrics(latest: dict[str, object]) -> list[str]:
    """Without ``metric=``: the numeric metrics of the experiment's latest epoch, by name."""
    names = [k for k, v in latest.items() if isinstance(v, int | float) and not isinstance(v, bool)]
    return sorted(names)[:MAX_METRICS]


async def read_history(
    session: AsyncSession,
    *,
    principal: Principal,
    experiment_id: uuid.UUID,
    metrics: list[str] | None,
    buckets: int,
    from_epoch: int | None,
    to_epoch: int | None,
) -> History:
    experiment = await get_visible_experiment(
        session, principal=principal, experiment_id=experiment_id
    )
    names = list(dict.fromkeys(metrics)) if metrics else default_metrics(experiment.metrics)
    return await repository.downsampled_history(
        session,
        experiment.id,
        metrics=names,
        buckets=buckets,
        from_epoch=from_epoch,
        to_epoch=to_epoch,
    )
