"""Event handlers (run by the shared EventConsumer inside its inbox-guarded transaction)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from runyard.experiments import users
from runyard.experiments.alerts import service as alerts
from runyard.experiments.campaigns.service import hpo_results
from runyard.experiments.registry import service as registry
from runyard.shared.contracts.auth import UserDeactivated, UserRegistered, UserUpdated
from runyard.shared.contracts.experiments import (
    ExperimentCancelled,
    ExperimentCompleted,
    ExperimentDeleted,
    ExperimentEpochsLogged,
    ExperimentFailed,
    ExperimentStalled,
)
from runyard.shared.events import CloudEvent
from runyard.shared.inbox import Handler
from runyard.shared.logging import get_logger

log = get_logger(__name__)


def event_sequence(event: CloudEvent) -> int:
    """The user's version that auth stamps on user events; 0 (the oldest) when absent."""
    if event.sequence is not None and event.sequence.isdigit():
        return int(event.sequence)
    log.warning("experiments.event.sequence_missing", sequence=event.sequence)
    return 0


async def on_user_snapshot(
    session: AsyncSession, event: CloudEvent, payload: UserRegistered | UserUpdated
) -> None:
    await users.apply_user_snapshot(
        session,
        user_id=payload.user_id,
        username=payload.username,
        email=payload.email,
        full_name=payload.full_name,
        role=payload.role,
        is_active=payload.is_active,
        sequence=event_sequence(event),
    )


async def on_user_deactivated(
    session: AsyncSession, event: CloudEvent, payload: UserDeactivated
) -> None:
    await users.deactivate_user(
        session, user_id=payload.user_id, username=payload.username, sequence=event_sequence(event)
    )


async def on_experiment_ended(
    session: AsyncSession,
    event: CloudEvent,
    payload: ExperimentCompleted | ExperimentFailed | ExperimentCancelled | ExperimentDeleted,
) -> None:
    """An HPO trial's experiment ended: tell the campaign (other experiments: nothing to do);
    the owner's alert rules (the last epochs, then lifecycle rules); and the model versions
    still waiting for its artifact (ready if it is there now, else failed)."""
    ended = {
        ExperimentCompleted.event_type: "completed",
        ExperimentFailed.event_type: "failed",
        ExperimentCancelled.event_type: "cancelled",
        ExperimentDeleted.event_type: "deleted",
    }
    await hpo_results.finish_trial(
        session,
        experiment_id=payload.experiment_id,
        status=ended[event.type],
        final_metrics=getattr(payload, "final_metrics", {}),
    )
    await registry.settle_versions_of(session, experiment_id=payload.experiment_id)
    if event.type != ExperimentDeleted.event_type:
        await alerts.evaluate_lifecycle_event(
            session,
            experiment_id=payload.experiment_id,
            owner_id=payload.owner_id,
            event=ended[event.type],
            at=getattr(payload, "ended_at", None) or event.time,
            final_metrics=getattr(payload, "final_metrics", {}),
            error=getattr(payload, "error", None),
        )


async def on_epochs_logged(
    session: AsyncSession, event: CloudEvent, payload: ExperimentEpochsLogged
) -> None:
    """Alert rules: evaluate the experiment's new epochs (ADR 0018)."""
    await alerts.evaluate_epochs(
        session, experiment_id=payload.experiment_id, owner_id=payload.owner_id
    )


async def on_experiment_stalled(
    session: AsyncSession, event: CloudEvent, payload: ExperimentStalled
) -> None:
    """Alert rules on a run that stopped reporting."""
    await alerts.evaluate_lifecycle_event(
        session,
        experiment_id=payload.experiment_id,
        owner_id=payload.owner_id,
        event="stalled",
        at=payload.stalled_at,
        final_metrics={},
        error=None,
    )


def handlers() -> dict[str, Handler]:
    return {
        UserRegistered.event_type: on_user_snapshot,
        UserUpdated.event_type: on_user_snapshot,
        UserDeactivated.event_type: on_user_deactivated,
        ExperimentCompleted.event_type: on_experiment_ended,
        ExperimentFailed.event_type: on_experiment_ended,
        ExperimentCancelled.event_type: on_experiment_ended,
        ExperimentDeleted.event_type: on_experiment_ended,
        ExperimentEpochsLogged.event_type: on_epochs_logged,
        ExperimentStalled.event_type: on_experiment_stalled,
    }
