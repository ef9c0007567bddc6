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
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TSVECTOR
from sqlalchemy.orm import Mapped, deferred, mapped_column

from runyard.shared.db import Timestamps, UUIDPrimaryKey, make_base, utcnow
from runyard.shared.inbox import inbox_table
from runyard.shared.outbox import outbox_table

SCHEMA = "experiments"
Base = make_base(SCHEMA)
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
    __table_args__ = (UniqueConstraint("owner_id", "name"),)

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
