"""The context of a training run's liveness email (``experiment.stalled``): a failure alert
that may be undone, since the run may yet report again (``experiment.resumed`` notifies
nobody)."""

from __future__ import annotations

from typing import Any

from runyard.notifications.formatting import facts, format_local
from runyard.notifications.models import User
from runyard.shared.contracts.experiments import ExperimentStalled
from runyard.shared.events import CloudEvent


def silence(seconds: float) -> str:
    """A silence limit as prose: ``45 seconds``, ``10 minutes``, ``1.5 hours``."""
    if seconds < 120:
        return f"{round(seconds)} second{'' if round(seconds) == 1 else 's'}"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.3g} minutes"
    return f"{seconds / 3600:.3g} hours"


def experiment_stalled_context(
    event: CloudEvent, payload: ExperimentStalled, user: User
) -> dict[str, Any]:
    last_seen = payload.last_seen_at and format_local(payload.last_seen_at, user.timezone)
    metrics = sorted(payload.latest_metrics.items())
    return {
        "experiment": {"name": payload.name, "silence": silence(payload.stale_after_s)},
        "facts": facts(
            ("Experiment ID", payload.experiment_id),
            ("Model type", payload.model_type),
            ("Epochs logged", payload.total_epochs),
            ("Started", format_local(payload.started_at, user.timezone)),
            ("Last report", last_seen),
            ("Marked stalled", format_local(payload.stalled_at, user.timezone)),
            *[
                (f"Last {name}", f"{value:.4g}" if isinstance(value, float) else value)
                for name, value in metrics
            ],
        ),
    }
