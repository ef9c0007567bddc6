"""Events published by the experiments service (source ``/runyard/experiments``).

Every payload carries ``owner_id`` (the webhooks service fans events out to the owner's
endpoints by it). Owner names and emails come from the experiments service's read model of users
(fed by ``user.*`` events); they are ``null`` while that model has not heard of the user yet.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from runyard.shared.events import EventPayload


class _DatasetEvent(EventPayload):
    dataset_id: uuid.UUID
    owner_id: uuid.UUID
    name: str
    description: str | None = None
    num_signals: int = 0
    fault_types: list[str] = []
    severity_levels: list[str] = []


class DatasetCreated(_DatasetEvent):
    event_type = "dataset.created"


class DatasetUpdated(_DatasetEvent):
    event_type = "dataset.updated"
    #: names of the fields the update changed
    changed: list[str] = []


class DatasetDeleted(EventPayload):
    event_type = "dataset.deleted"
    dataset_id: uuid.UUID
    owner_id: uuid.UUID
    name: str


class _ExperimentEvent(EventPayload):
    experiment_id: uuid.UUID
    name: str
    owner_id: uuid.UUID
    model_type: str | None = None
    dataset_id: uuid.UUID | None = None
    status: str
    owner_username: str | None = None
    owner_email: str | None = None
    owner_full_name: str | None = None
    dataset_name: str | None = None
    #: the project the experiment belongs to (null: none)
    project_id: uuid.UUID | None = None


class ExperimentCreated(_ExperimentEvent):
    event_type = "experiment.created"


class ExperimentUpdated(_ExperimentEvent):
    event_type = "experiment.updated"
    #: names of the fields the update changed
    changed: list[str] = []


class ExperimentDeleted(_ExperimentEvent):
    """The experiment is gone: deleted with its runs (Runyard's API), or soft-deleted as an
    MLflow run (MLflow's delete-run; ``experiment.restored`` may bring it back)."""

    event_type = "experiment.deleted"


class ExperimentRestored(_ExperimentEvent):
    """An experiment soft-deleted through MLflow's delete-run is back (MLflow's restore-run)."""

    event_type = "experiment.restored"


class ExperimentStarted(_ExperimentEvent):
    event_type = "experiment.started"
    started_at: datetime | None = None


class ExperimentPaused(_ExperimentEvent):
    event_type = "experiment.paused"
    total_epochs: int = 0
    latest_metrics: dict[str, Any] = {}


class ExperimentResumed(_ExperimentEvent):
    """Back to ``running``: resumed from ``paused``, or a stalled run reported again (then
    ``stalled_at`` says since when it had been silent)."""

    event_type = "experiment.resumed"
    total_epochs: int = 0
    #: when the run had been marked stalled; null for a resume from ``paused``
    stalled_at: datetime | None = None


class ExperimentStalled(_ExperimentEvent):
    """A running experiment sent no heartbeat and logged no epoch for ``stale_after_s``: its
    training process may have died or hung. It stays ``running``; ``experiment.resumed``
    follows when it reports again."""

    event_type = "experiment.stalled"
    total_epochs: int = 0
    latest_metrics: dict[str, Any] = {}
    started_at: datetime | None = None
    #: the last heartbeat or epoch (null: none since the experiment started)
    last_seen_at: datetime | None = None
    stalled_at: datetime
    #: the silence that counts as stalled for this experiment, in seconds
    stale_after_s: float


class _ExperimentEnded(_ExperimentEvent):
    final_metrics: dict[str, Any] = {}
    best_epoch: int | None = None
    total_epochs: int = 0
    started_at: datetime | None = None
    ended_at: datetime | None = None
    duration_seconds: float | None = None


class ExperimentCompleted(_ExperimentEnded):
    event_type = "experiment.completed"


class ExperimentFailed(_ExperimentEnded):
    event_type = "experiment.failed"
    error: str | None = None


class ExperimentCancelled(_ExperimentEnded):
    event_type = "experiment.cancelled"
    reason: str | None = None


class ExperimentEpochsLogged(EventPayload):
    """Epochs were written to the experiment (new, or logged again with other values): one
    event per experiment and short window (the requests of the window add up), written before
    the experiment's next lifecycle event."""

    event_type = "experiment.epochs_logged"
    experiment_id: uuid.UUID
    owner_id: uuid.UUID
    name: str
    status: str
    #: the lowest and highest epoch the window's requests wrote
    first_epoch: int
    last_epoch: int
    #: epochs the window's requests wrote (added up), and how many of them were new
    epochs_written: int
    epochs_inserted: int
    total_epochs: int
    #: the metrics of the highest epoch written (``last_epoch``)
    latest_metrics: dict[str, float] = {}
    best_epoch: int | None = None
    best_value: float | None = None
    logged_at: datetime


class _CampaignEvent(EventPayload):
    campaign_id: uuid.UUID
    name: str
    owner_id: uuid.UUID
    dataset_id: uuid.UUID | None = None
    owner_username: str | None = None
    owner_email: str | None = None
    owner_full_name: str | None = None


class HpoCampaignStarted(_CampaignEvent):
    """The first trial of an HPO campaign was suggested."""

    event_type = "hpo_campaign.started"
    method: str
    metric: str
    direction: str
    max_trials: int


class HpoCampaignCompleted(_CampaignEvent):
    """An HPO campaign's budget (trials or duration) is spent."""

    event_type = "hpo_campaign.completed"
    method: str
    metric: str
    direction: str
    trials_completed: int
    trials_total: int
    best_experiment_id: uuid.UUID | None = None
    best_value: float | None = None
    best_params: dict[str, Any] = {}
    #: "budget_trials" | "budget_duration"
    reason: str = "budget_trials"


class NasCampaignCompleted(_CampaignEvent):
    """A NAS campaign reached its trial budget."""

    event_type = "nas_campaign.completed"
    search_algorithm: str
    num_trials: int
    trials_completed: int
    best_trial_id: uuid.UUID | None = None
    best_accuracy: float | None = None
    best_architecture: dict[str, Any] | None = None


class NasTrialCompleted(_CampaignEvent):
    """An architecture's evaluation was recorded as a NAS campaign's trial (written before the
    campaign's ``nas_campaign.completed`` when it is the last one)."""

    event_type = "nas_trial.completed"
    trial_id: uuid.UUID
    #: 0-based, in the order the trials were recorded
    trial_number: int
    #: the objective (higher is better)
    validation_accuracy: float | None = None
    validation_loss: float | None = None
    #: whether this trial is the campaign's best so far
    is_best: bool = False
    best_accuracy: float | None = None
    trials_completed: int
    num_trials: int
    #: the campaign's status after the trial: "running" or "completed"
    campaign_status: str


class _DatasetJobEvent(EventPayload):
    job_id: uuid.UUID
    name: str
    owner_id: uuid.UUID
    owner_username: str | None = None
    owner_email: str | None = None
    owner_full_name: str | None = None
    duration_seconds: float | None = None


class DatasetGenerationCompleted(_DatasetJobEvent):
    event_type = "dataset_generation.completed"
    dataset_id: uuid.UUID
    num_signals: int
    fault_types: list[str] = []
    output_path: str | None = None


class DatasetGenerationFailed(_DatasetJobEvent):
    event_type = "dataset_generation.failed"
    error: str


class DatasetImportCompleted(_DatasetJobEvent):
    event_type = "dataset_import.completed"
    dataset_id: uuid.UUID
    num_files: int
    num_signals: int


class DatasetImportFailed(_DatasetJobEvent):
    event_type = "dataset_import.failed"
    error: str
    #: per-row / per-file validation errors (first ones), when validation failed
    errors: list[dict[str, Any]] = []


class _ProjectEvent(EventPayload):
    project_id: uuid.UUID
    owner_id: uuid.UUID
    name: str
    description: str | None = None
    #: key/value tags of the project
    tags: dict[str, Any] = {}
    #: ``active``, or ``deleted`` (soft-deleted, restorable)
    lifecycle_stage: str = "active"


class ProjectCreated(_ProjectEvent):
    event_type = "project.created"


class ProjectUpdated(_ProjectEvent):
    event_type = "project.updated"
    #: names of the fields the update changed
    changed: list[str] = []


class ProjectDeleted(_ProjectEvent):
    """Soft delete: the project is hidden from lists and takes no new experiments; its
    experiments are untouched. ``project.restored`` undoes it."""

    event_type = "project.deleted"


class ProjectRestored(_ProjectEvent):
    event_type = "project.restored"


class _ArtifactEvent(EventPayload):
    artifact_id: uuid.UUID
    experiment_id: uuid.UUID
    owner_id: uuid.UUID
    path: str
    size: int
    sha256: str
    content_type: str


class ArtifactCreated(_ArtifactEvent):
    """A file was stored at ``path`` of the experiment (also when it replaced an older one:
    ``replaced`` is then true)."""

    event_type = "artifact.created"
    replaced: bool = False


class ArtifactDeleted(_ArtifactEvent):
    event_type = "artifact.deleted"


class _LoggedModelArtifactEvent(EventPayload):
    """A file of an MLflow logged model made outside a run (``logged_model_id``: MLflow's
    ``m-<32 hex>``); a model logged in a run keeps its files with the run, and they make
    ``artifact.created`` / ``artifact.deleted``."""

    artifact_id: uuid.UUID
    logged_model_id: str
    owner_id: uuid.UUID
    path: str
    size: int
    sha256: str
    content_type: str


class LoggedModelArtifactCreated(_LoggedModelArtifactEvent):
    """A file was stored at ``path`` of the logged model (``replaced``: over an older one)."""

    event_type = "logged_model_artifact.created"
    replaced: bool = False


class LoggedModelArtifactDeleted(_LoggedModelArtifactEvent):
    event_type = "logged_model_artifact.deleted"


class _DatasetJobProgressed(EventPayload):
    """A running dataset job's progress, written with the progress it reports: at most one
    event per job and 0.5 s unless the progress moved by 5 points, and one before the final
    transaction. Not delivered to webhooks (too chatty for them); the console shows it live."""

    job_id: uuid.UUID
    name: str
    owner_id: uuid.UUID
    status: str = "running"
    #: percent done, 0-100 (the steps make 90; storing the dataset the rest)
    progress: int
    #: the steps' unit of work done and in all (``signals`` or ``files``, see each type)
    items_done: int
    items_total: int
    #: what the job does next: generation ``generating`` | ``storing``; import ``reading`` |
    #: ``storing`` (every item is done; the dataset is written in one last transaction)
    stage: str
    #: how many times a worker took the job (a resumed job: more than 1)
    attempts: int = 1
    started_at: datetime | None = None


class DatasetGenerationProgressed(_DatasetJobProgressed):
    """A generation job wrote another chunk of signals (``items_*`` count signals)."""

    event_type = "dataset_generation.progressed"


class DatasetImportProgressed(_DatasetJobProgressed):
    """An import job read and validated another file (``items_*`` count files)."""

    event_type = "dataset_import.progressed"
