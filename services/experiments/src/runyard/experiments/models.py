"""Tables of the experiments schema. Every row that a user creates has an ``owner_id``.

``experiments.search_vector`` is maintained by a trigger (migration 0002) from the name, model
type, tags, description and notes; ``experiments.tags`` is a copy of the experiment's tag slugs
(``experiment_tags`` is the source of truth) kept in the same transaction, for search.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TSVECTOR
from sqlalchemy.orm import DeclarativeBase, Mapped, deferred, mapped_column

from runyard.shared.db import Timestamps, UUIDPrimaryKey, schema_metadata, utcnow
from runyard.shared.inbox import inbox_table
from runyard.shared.outbox import outbox_table

SCHEMA = "experiments"


class Base(DeclarativeBase):
    """The experiments schema's tables: what ``runyard.shared.db.make_base`` builds, declared as
    a class so that the models type-check (a base returned by a call is no type to mypy)."""

    metadata = schema_metadata(SCHEMA)
    type_annotation_map = {datetime: DateTime(timezone=True)}


outbox = outbox_table(Base.metadata)
inbox = inbox_table(Base.metadata)

STATUSES = ("pending", "running", "paused", "completed", "failed", "cancelled")
TERMINAL = frozenset({"completed", "failed", "cancelled"})


class User(Base):
    """Read model of auth's users, fed by ``user.*`` events; ``sequence`` drops stale updates."""

    __tablename__ = "users"

    user_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(255))
    email: Mapped[str | None] = mapped_column(String(320))
    full_name: Mapped[str | None] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(20), default="user")
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    sequence: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), default=utcnow, onupdate=utcnow
    )


class Dataset(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "datasets"
    __table_args__ = (UniqueConstraint("owner_id", "name"),)

    owner_id: Mapped[uuid.UUID]
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    num_signals: Mapped[int] = mapped_column(Integer, default=0)
    fault_types: Mapped[list[str]] = mapped_column(JSONB, default=list)
    severity_levels: Mapped[list[str]] = mapped_column(JSONB, default=list)
    file_path: Mapped[str | None] = mapped_column(String(1024))
    meta_data: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    version: Mapped[int] = mapped_column(Integer, default=1)


class Signal(Base):
    __tablename__ = "signals"
    __table_args__ = (
        UniqueConstraint("dataset_id", "signal_id"),
        Index("ix_signals_dataset_id_id", "dataset_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    dataset_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey(f"{SCHEMA}.datasets.id", ondelete="CASCADE")
    )
    signal_id: Mapped[str] = mapped_column(String(255))
    fault_class: Mapped[str | None] = mapped_column(String(100))
    severity: Mapped[str | None] = mapped_column(String(50))
    file_path: Mapped[str | None] = mapped_column(String(1024))
    rms: Mapped[float | None] = mapped_column(Float)
    kurtosis: Mapped[float | None] = mapped_column(Float)
    dominant_frequency: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), default=utcnow
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), default=utcnow, onupdate=utcnow
    )


class Experiment(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "experiments"
    __table_args__ = (
        UniqueConstraint("owner_id", "name"),
        CheckConstraint("stalled_at IS NULL OR status = 'running'", name="stalled_only_running"),
        CheckConstraint("stale_after_s > 0", name="stale_after_s_positive"),
    )

    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    owner_id: Mapped[uuid.UUID]
    model_type: Mapped[str | None] = mapped_column(String(100))
    dataset_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey(f"{SCHEMA}.datasets.id"))
    status: Mapped[str] = mapped_column(String(20), default="pending", index=True)
    config: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    hyperparameters: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    best_epoch: Mapped[int | None] = mapped_column(Integer)
    total_epochs: Mapped[int] = mapped_column(Integer, default=0)
    error_message: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    version: Mapped[int] = mapped_column(Integer, default=1)
    # --- 0002
    notes: Mapped[str | None] = mapped_column(Text)
    model_path: Mapped[str | None] = mapped_column(String(1024))
    onnx_path: Mapped[str | None] = mapped_column(String(1024))
    results_dir: Mapped[str | None] = mapped_column(String(1024))
    duration_seconds: Mapped[float | None] = mapped_column(Float)
    hpo_campaign_id: Mapped[uuid.UUID | None]
    best_metric: Mapped[str] = mapped_column(String(100), default="val_loss")
    best_mode: Mapped[str] = mapped_column(String(3), default="min")
    best_value: Mapped[float | None] = mapped_column(Float)
    last_epoch: Mapped[int | None] = mapped_column(Integer)
    tags: Mapped[list[str]] = mapped_column(ARRAY(String(64)), default=list)
    search_vector: Mapped[str | None] = deferred(mapped_column(TSVECTOR))
    # --- 0005: liveness. The last heartbeat or epoch; set while a running experiment is silent
    # (a flag, not a status); the experiment's own silence limit (null: the service's default)
    last_seen_at: Mapped[datetime | None]
    stalled_at: Mapped[datetime | None]
    stale_after_s: Mapped[int | None] = mapped_column(Integer)
    # --- 0007: the project the experiment belongs to (null: none)
    project_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey(f"{SCHEMA}.projects.id", ondelete="SET NULL"), index=True
    )
    # --- 0008: what MLflow's tracking API keeps of a run. Key/value tags (MLflow's ``mlflow.*``
    # system tags included); soft delete (null: not deleted); dataset/model inputs and outputs
    kv_tags: Mapped[dict[str, str]] = mapped_column(JSONB, default=dict, server_default="{}")
    deleted_at: Mapped[datetime | None]
    inputs: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, default=list, server_default="[]")
    outputs: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, default=list, server_default="[]")


class TrainingRun(Base):
    """One epoch of an experiment; ``(experiment_id, epoch)`` is unique (idempotent logging)."""

    __tablename__ = "training_runs"
    __table_args__ = (UniqueConstraint("experiment_id", "epoch"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    experiment_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey(f"{SCHEMA}.experiments.id", ondelete="CASCADE")
    )
    epoch: Mapped[int] = mapped_column(Integer)
    train_loss: Mapped[float | None] = mapped_column(Float)
    val_loss: Mapped[float | None] = mapped_column(Float)
    train_accuracy: Mapped[float | None] = mapped_column(Float)
    val_accuracy: Mapped[float | None] = mapped_column(Float)
    learning_rate: Mapped[float | None] = mapped_column(Float)
    duration_seconds: Mapped[float | None] = mapped_column(Float)
    checkpoint_path: Mapped[str | None] = mapped_column(String(1024))
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), default=utcnow
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), default=utcnow, onupdate=utcnow
    )


class HistoryBlock(Base):
    """A summary of one metric over an aligned block of an experiment's epochs, kept in the
    transaction that writes the runs (``tracking.repository.history``): blocks of 16 x 4**level
    epochs (level 0-4: 16 to 4,096), so that a downsampled history reads blocks, not runs.
    ``metric`` '' is every run of the block (its count, highest epoch and that epoch's time)."""

    __tablename__ = "history_blocks"

    experiment_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey(f"{SCHEMA}.experiments.id", ondelete="CASCADE"), primary_key=True
    )
    metric: Mapped[str] = mapped_column(String(100), primary_key=True)
    level: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    #: the block's first epoch is ``block * 16 * 4**level``
    block: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: runs of the block having the metric
    n: Mapped[int] = mapped_column(Integer)
    min: Mapped[float | None] = mapped_column(Float)
    max: Mapped[float | None] = mapped_column(Float)
    #: the highest epoch of the block having the metric, its value and when it was logged
    last_epoch: Mapped[int] = mapped_column(Integer)
    last_value: Mapped[float | None] = mapped_column(Float)
    last_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class PendingEpochs(Base):
    """Epochs logged to an experiment whose ``experiment.epochs_logged`` event is not written
    yet: the requests of a short window add up here (in their own transactions) and the
    ``epoch-events`` worker turns the row into one event. A lifecycle change writes the row's
    event first, so consumers see an experiment's epochs before it ends."""

    __tablename__ = "pending_epochs"

    experiment_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey(f"{SCHEMA}.experiments.id", ondelete="CASCADE"), primary_key=True
    )
    first_epoch: Mapped[int] = mapped_column(Integer)
    last_epoch: Mapped[int] = mapped_column(Integer)
    epochs_written: Mapped[int] = mapped_column(Integer)
    epochs_inserted: Mapped[int] = mapped_column(Integer)
    #: the metrics of ``last_epoch``
    latest_metrics: Mapped[dict[str, Any]] = mapped_column(JSONB)
    #: the window's first request (the row is due a window after it) and its last one
    first_logged_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    logged_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # What the run's summaries still owe for the epochs the SQL path wrote (``mlflow_log_epochs``,
    # migration 0022; ``epoch_events.fold``): the level-0 history blocks to rebuild (None:
    # nothing owed), the new epochs, the highest epoch merged into the run's latest metrics
    # and those metrics, the best candidate, and the last sign of life.
    fold_blocks: Mapped[list[int] | None] = mapped_column(ARRAY(Integer))
    fold_inserted: Mapped[int] = mapped_column(Integer, server_default="0")
    fold_last_epoch: Mapped[int | None] = mapped_column(Integer)
    fold_metrics: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    fold_best_epoch: Mapped[int | None] = mapped_column(Integer)
    fold_best_value: Mapped[float | None] = mapped_column(Float)
    fold_seen_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class MlflowMetric(Base):
    """Every metric value an MLflow client logged, kept as MLflow keeps it: several values per
    step (told apart by timestamp), any 64-bit step, NaN and infinities included. An identical
    value logged again is stored once. ``training_runs`` keeps Runyard's view of the same
    values: one finite value per metric and epoch (step >= 0), the last one logged."""

    __tablename__ = "mlflow_metrics"

    experiment_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey(f"{SCHEMA}.experiments.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    step: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    #: milliseconds since the Unix epoch, as the client sent it
    timestamp: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    value: Mapped[float] = mapped_column(Float, primary_key=True)


class MlflowLatestMetric(Base):
    """Per run and metric, the value MLflow reports as the run's: the greatest
    (step, timestamp, value) logged."""

    __tablename__ = "mlflow_latest_metrics"

    experiment_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey(f"{SCHEMA}.experiments.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    step: Mapped[int] = mapped_column(BigInteger)
    timestamp: Mapped[int] = mapped_column(BigInteger)
    value: Mapped[float] = mapped_column(Float)


class Tag(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "tags"
    __table_args__ = (
        UniqueConstraint("owner_id", "slug"),
        UniqueConstraint("owner_id", "name"),
        CheckConstraint("usage_count >= 0", name="usage_count_not_negative"),
    )

    owner_id: Mapped[uuid.UUID]
    name: Mapped[str] = mapped_column(String(64))
    slug: Mapped[str] = mapped_column(String(64))
    color: Mapped[str] = mapped_column(String(7))
    usage_count: Mapped[int] = mapped_column(Integer, default=0)


class ExperimentTag(Base):
    __tablename__ = "experiment_tags"
    __table_args__ = (UniqueConstraint("experiment_id", "tag_id"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    experiment_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey(f"{SCHEMA}.experiments.id", ondelete="CASCADE")
    )
    tag_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey(f"{SCHEMA}.tags.id", ondelete="CASCADE"), index=True
    )
    added_by: Mapped[uuid.UUID | None]
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), default=utcnow
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), default=utcnow, onupdate=utcnow
    )


class SavedSearch(UUIDPrimaryKey, Timestamps, Base):
    """A named experiment search of one user: ``query`` (filter expression), ``q``, ``order_by``."""

    __tablename__ = "saved_searches"
    __table_args__ = (UniqueConstraint("owner_id", "name"),)

    owner_id: Mapped[uuid.UUID]
    name: Mapped[str] = mapped_column(String(255))
    query: Mapped[str] = mapped_column(Text, default="")
    q: Mapped[str | None] = mapped_column(Text)
    order_by: Mapped[str | None] = mapped_column(String(200))
    is_pinned: Mapped[bool] = mapped_column(Boolean, default=False)
    usage_count: Mapped[int] = mapped_column(Integer, default=0)
    last_used_at: Mapped[datetime | None]


# --- HPO and NAS campaigns, explanations, dataset jobs -----------------------------------------

HPO_METHODS = ("grid", "random", "bayesian", "hyperband")
CAMPAIGN_STATUSES = ("pending", "running", "completed", "cancelled")
JOB_STATUSES = ("pending", "running", "completed", "failed", "cancelled")


class HpoCampaign(UUIDPrimaryKey, Timestamps, Base):
    """A hyperparameter search. ``trials_started`` counts suggestions, ``trials_completed`` the
    trials whose experiment ended (completed, failed or cancelled); ``trials_total`` is the trial
    budget. The Optuna study is rebuilt from ``hpo_trials`` on every ask/tell (ADR 0007)."""

    __tablename__ = "hpo_campaigns"
    __table_args__ = (
        UniqueConstraint("owner_id", "name"),
        CheckConstraint("trials_started <= trials_total", name="trials_within_budget"),
    )

    owner_id: Mapped[uuid.UUID]
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    method: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), default="pending")
    base_model_type: Mapped[str | None] = mapped_column(String(100))
    dataset_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey(f"{SCHEMA}.datasets.id", ondelete="SET NULL")
    )
    search_space: Mapped[dict[str, Any]] = mapped_column(JSONB)
    budget: Mapped[dict[str, Any]] = mapped_column(JSONB)
    base_hyperparameters: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    metric: Mapped[str] = mapped_column(String(100))
    direction: Mapped[str] = mapped_column(String(8))
    pruner: Mapped[str] = mapped_column(String(20), default="none")
    seed: Mapped[int] = mapped_column(Integer)
    trials_started: Mapped[int] = mapped_column(Integer, default=0)
    trials_completed: Mapped[int] = mapped_column(Integer, default=0)
    trials_total: Mapped[int] = mapped_column(Integer)
    best_experiment_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey(f"{SCHEMA}.experiments.id", ondelete="SET NULL")
    )
    best_value: Mapped[float | None] = mapped_column(Float)
    best_accuracy: Mapped[float | None] = mapped_column(Float)
    best_params: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    completion_reason: Mapped[str | None] = mapped_column(String(30))
    started_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    version: Mapped[int] = mapped_column(Integer, default=1)


class HpoTrial(Base):
    """One suggestion of a campaign: its experiment, the sampled parameters and what Optuna
    needs to rebuild the trial (``system_attrs``); ``state`` follows the experiment."""

    __tablename__ = "hpo_trials"
    __table_args__ = (UniqueConstraint("campaign_id", "number"), UniqueConstraint("experiment_id"))

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    campaign_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey(f"{SCHEMA}.hpo_campaigns.id", ondelete="CASCADE")
    )
    number: Mapped[int] = mapped_column(Integer)
    #: no foreign key: the trial outlives its experiment (a deleted experiment is a failed trial)
    experiment_id: Mapped[uuid.UUID]
    params: Mapped[dict[str, Any]] = mapped_column(JSONB)
    system_attrs: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    #: running | complete | pruned | fail
    state: Mapped[str] = mapped_column(String(10), default="running")
    value: Mapped[float | None] = mapped_column(Float)
    #: the epoch at which should-prune first answered true
    pruned_at_step: Mapped[int | None] = mapped_column(Integer)
    finished_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), default=utcnow
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), default=utcnow, onupdate=utcnow
    )


class NasCampaign(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "nas_campaigns"
    __table_args__ = (UniqueConstraint("owner_id", "name"),)

    owner_id: Mapped[uuid.UUID]
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    dataset_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey(f"{SCHEMA}.datasets.id", ondelete="SET NULL")
    )
    search_algorithm: Mapped[str] = mapped_column(String(50))
    num_trials: Mapped[int] = mapped_column(Integer)
    max_epochs_per_trial: Mapped[int | None] = mapped_column(Integer)
    search_space_config: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    trials_completed: Mapped[int] = mapped_column(Integer, default=0)
    best_trial_id: Mapped[uuid.UUID | None]
    best_accuracy: Mapped[float | None] = mapped_column(Float)
    task_id: Mapped[str | None] = mapped_column(String(255))
    error_message: Mapped[str | None] = mapped_column(Text)
    ended_at: Mapped[datetime | None]
    version: Mapped[int] = mapped_column(Integer, default=1)


class NasTrial(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "nas_trials"
    __table_args__ = (
        UniqueConstraint("campaign_id", "trial_number"),
        UniqueConstraint("campaign_id", "architecture_hash"),
    )

    campaign_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey(f"{SCHEMA}.nas_campaigns.id", ondelete="CASCADE")
    )
    trial_number: Mapped[int] = mapped_column(Integer)
    architecture: Mapped[dict[str, Any]] = mapped_column(JSONB)
    architecture_hash: Mapped[str] = mapped_column(String(64))
    validation_accuracy: Mapped[float | None] = mapped_column(Float)
    validation_loss: Mapped[float | None] = mapped_column(Float)
    training_time: Mapped[float | None] = mapped_column(Float)
    num_parameters: Mapped[int | None] = mapped_column(BigInteger)
    flops: Mapped[int | None] = mapped_column(BigInteger)
    model_size_mb: Mapped[float | None] = mapped_column(Float)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)


class Explanation(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "explanations"
    __table_args__ = (
        Index("ix_explanations_experiment_id_created_at", "experiment_id", "created_at"),
    )

    experiment_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey(f"{SCHEMA}.experiments.id", ondelete="CASCADE")
    )
    signal_id: Mapped[str | None] = mapped_column(String(255))
    method: Mapped[str] = mapped_column(String(50))
    explanation_data: Mapped[dict[str, Any]] = mapped_column(JSONB)
    file_path: Mapped[str | None] = mapped_column(String(1024))


class _DatasetJob(UUIDPrimaryKey, Timestamps):
    """A durable background job: claimed by a worker with ``FOR UPDATE SKIP LOCKED`` (a lease
    in ``locked_until``), resumable after a restart from ``progress``."""

    owner_id: Mapped[uuid.UUID]
    name: Mapped[str] = mapped_column(String(255))
    config: Mapped[dict[str, Any]] = mapped_column(JSONB)
    status: Mapped[str] = mapped_column(String(20), default="pending", index=True)
    num_signals: Mapped[int] = mapped_column(Integer, default=0)
    output_path: Mapped[str | None] = mapped_column(String(1024))
    #: percent done (0-100)
    progress: Mapped[int] = mapped_column(Integer, default=0)
    #: signals (generation) or files (import) done: where a resumed job goes on
    items_done: Mapped[int] = mapped_column(Integer, default=0)
    #: the worker currently holding the job (the column's name is historical: no Celery)
    celery_task_id: Mapped[str | None] = mapped_column(String(255))
    locked_until: Mapped[datetime | None]
    #: claims of the job; one more than its worker deaths while it runs (see job_max_attempts)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    dataset_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey(f"{SCHEMA}.datasets.id", ondelete="SET NULL")
    )
    error_message: Mapped[str | None] = mapped_column(Text)
    errors: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, default=list)
    started_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    duration_seconds: Mapped[float | None] = mapped_column(Float)
    #: bytes of signal files the job holds on disk (its upload, or what its generation writes:
    #: projected until it completes), counted against its owner's quota; 0 once they are removed
    bytes_stored: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class DatasetGeneration(_DatasetJob, Base):
    __tablename__ = "dataset_generations"

    num_faults: Mapped[int] = mapped_column(Integer, default=0)


class DatasetImport(_DatasetJob, Base):
    __tablename__ = "dataset_imports"

    num_files: Mapped[int] = mapped_column(Integer, default=0)


# --- 0007: projects and artifacts ---------------------------------------------------------------

PROJECT_STAGES = ("active", "deleted")


class Project(UUIDPrimaryKey, Timestamps, Base):
    """A named group of an owner's experiments (W&B's project, MLflow's experiment). Deleting
    one is soft (``lifecycle_stage`` ``deleted``, restorable); its experiments keep it."""

    __tablename__ = "projects"
    __table_args__ = (
        UniqueConstraint("owner_id", "name"),
        CheckConstraint("lifecycle_stage IN ('active', 'deleted')", name="lifecycle_stage"),
        Index("ix_projects_owner_id_created_at_id", "owner_id", "created_at", "id"),
    )

    owner_id: Mapped[uuid.UUID]
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    #: key/value tags (MLflow's experiment tags)
    tags: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    lifecycle_stage: Mapped[str] = mapped_column(String(10), default="active")
    deleted_at: Mapped[datetime | None]
    version: Mapped[int] = mapped_column(Integer, default=1)


class ArtifactBlob(Base):
    """A stored content (by its SHA-256) and its size; a blob without artifacts is garbage."""

    __tablename__ = "artifact_blobs"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now(), default=utcnow)


class Artifact(UUIDPrimaryKey, Timestamps, Base):
    """A file at ``path`` of its holder: an experiment, or (``logged_model_id``, migration 0020)
    an MLflow logged model made outside a run, which has no experiment to keep its files. Its
    bytes are the blob ``sha256``. ``owner_id`` is the holder's owner (whose quota the bytes
    count against)."""

    __tablename__ = "artifacts"
    __table_args__ = (
        UniqueConstraint("experiment_id", "path"),
        Index(
            "uq_artifacts_logged_model_id_path",
            "logged_model_id",
            "path",
            unique=True,
            postgresql_where=text("logged_model_id IS NOT NULL"),
        ),
        Index("ix_artifacts_owner_id", "owner_id"),
        Index("ix_artifacts_sha256", "sha256"),
        CheckConstraint("size >= 0", name="size_not_negative"),
        CheckConstraint("num_nonnulls(experiment_id, logged_model_id) = 1", name="one_holder"),
    )

    experiment_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey(f"{SCHEMA}.experiments.id", ondelete="CASCADE")
    )
    logged_model_id: Mapped[str | None] = mapped_column(
        ForeignKey(f"{SCHEMA}.logged_models.id", ondelete="CASCADE")
    )
    owner_id: Mapped[uuid.UUID]
    path: Mapped[str] = mapped_column(String(1024))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    content_type: Mapped[str] = mapped_column(String(255))


# --- 0009: MLflow 3 logged models ----------------------------------------------------------------

LOGGED_MODEL_STATUSES = ("PENDING", "READY", "UPLOAD_FAILED")


class LoggedModel(Timestamps, Base):
    """An MLflow 3 logged model: ``id`` is MLflow's ``m-<32 hex>``. Its MLflow experiment is the
    project (null: the virtual "Default" experiment "0"); its files are artifacts of the source
    run (an experiment) under ``models/<id>/``. Deleting one is soft (``deleted_at``)."""

    __tablename__ = "logged_models"
    __table_args__ = (
        CheckConstraint("status IN ('PENDING', 'READY', 'UPLOAD_FAILED')", name="status"),
        Index(
            "ix_logged_models_owner_id_project_id_created_at",
            "owner_id",
            "project_id",
            "created_at",
        ),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner_id: Mapped[uuid.UUID]
    project_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey(f"{SCHEMA}.projects.id", ondelete="SET NULL"), index=True
    )
    source_run_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey(f"{SCHEMA}.experiments.id", ondelete="SET NULL"), index=True
    )
    name: Mapped[str] = mapped_column(String(255))
    model_type: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(20), default="PENDING")
    status_message: Mapped[str | None] = mapped_column(Text)
    #: MLflow params and tags (str -> str)
    params: Mapped[dict[str, str]] = mapped_column(JSONB, default=dict, server_default="{}")
    tags: Mapped[dict[str, str]] = mapped_column(JSONB, default=dict, server_default="{}")
    #: MLflow metrics logged with this model's id: {key, value, timestamp, step, run_id,
    #: dataset_name, dataset_digest}
    metrics: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, default=list, server_default="[]")
    deleted_at: Mapped[datetime | None]
