"""Tables of the model registry (migration 0013), in the experiments schema.

- ``registered_models``: a name unique per owner; ``last_version`` is the counter that numbers
  versions (bumped by ``UPDATE ... RETURNING`` in the transaction that inserts the version, so
  concurrent creates queue on the model's row and never share a number).
- ``model_versions``: one version of a model, made from an experiment's artifact (a file or a
  directory of files) at ``artifact_path``, or from the files of an MLflow logged model made
  outside a run (``logged_model_id``); ``size`` and ``sha256`` come from the artifact store's
  rows; ``status`` is ``pending`` (the artifact is not there yet), ``ready`` or ``failed``.
- ``model_aliases``: one row per (model, alias), moved in place under the row's lock; the
  foreign key to the version refuses to let a version holding an alias go.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from runyard.experiments.models import SCHEMA, Base
from runyard.shared.db import Timestamps, UUIDPrimaryKey, utcnow

VERSION_STATUSES = ("pending", "ready", "failed")


class RegisteredModel(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "registered_models"
    __table_args__ = (
        UniqueConstraint("owner_id", "name"),
        Index("ix_registered_models_owner_id_created_at_id", "owner_id", "created_at", "id"),
        CheckConstraint("last_version >= 0", name="last_version_not_negative"),
    )

    owner_id: Mapped[uuid.UUID]
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    #: key/value tags (str -> str, MLflow's registered model tags)
    tags: Mapped[dict[str, str]] = mapped_column(JSONB, default=dict, server_default="{}")
    #: the highest version number handed out (versions are numbered from 1, never reused)
    last_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class ModelVersion(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "model_versions"
    __table_args__ = (
        UniqueConstraint("model_id", "version"),
        CheckConstraint("status IN ('pending', 'ready', 'failed')", name="status"),
        CheckConstraint("version > 0", name="version_positive"),
        Index("ix_model_versions_owner_id", "owner_id"),
        Index("ix_model_versions_experiment_id", "experiment_id"),
        Index("ix_model_versions_logged_model_id", "logged_model_id"),
    )

    model_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey(f"{SCHEMA}.registered_models.id", ondelete="CASCADE")
    )
    #: the model's owner (copied: every query scopes by it)
    owner_id: Mapped[uuid.UUID]
    version: Mapped[int] = mapped_column(Integer)
    description: Mapped[str | None] = mapped_column(Text)
    tags: Mapped[dict[str, str]] = mapped_column(JSONB, default=dict, server_default="{}")
    #: lineage: the experiment (run) the version comes from (null once that experiment is gone)
    experiment_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey(f"{SCHEMA}.experiments.id", ondelete="SET NULL")
    )
    #: lineage: the MLflow logged model made outside a run whose files the version is (null:
    #: the version is an experiment's artifact; migration 0021)
    logged_model_id: Mapped[str | None] = mapped_column(
        ForeignKey(f"{SCHEMA}.logged_models.id", ondelete="SET NULL")
    )
    #: the artifact's path in the experiment ('' = all its artifacts; always '' for a logged
    #: model's files); a file or a directory
    artifact_path: Mapped[str] = mapped_column(String(1024))
    #: where the version was declared from (MLflow's ``source``, e.g. ``runs:/<id>/model``)
    source: Mapped[str | None] = mapped_column(String(2048))
    #: bytes of the artifact (sum over a directory's files); its SHA-256 (a directory's: of its
    #: manifest, one "<sha256>  <relative path>\n" line per file in path order)
    size: Mapped[int | None] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64))
    file_count: Mapped[int | None] = mapped_column(Integer)
    input_schema: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    output_schema: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    status_message: Mapped[str | None] = mapped_column(Text)
    #: lineage: the experiment's headline metric when the version was made
    metric_name: Mapped[str | None] = mapped_column(String(100))
    metric_value: Mapped[float | None]
    archived_at: Mapped[datetime | None]


class ModelAlias(Base):
    __tablename__ = "model_aliases"
    __table_args__ = (Index("ix_model_aliases_version_id", "version_id"),)

    model_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey(f"{SCHEMA}.registered_models.id", ondelete="CASCADE"), primary_key=True
    )
    alias: Mapped[str] = mapped_column(String(255), primary_key=True)
    #: NO ACTION (checked at the statement's end), so deleting a model takes its aliases and
    #: versions in one statement, while a version with an alias cannot go alone
    version_id: Mapped[uuid.UUID] = mapped_column(ForeignKey(f"{SCHEMA}.model_versions.id"))
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), default=utcnow
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), default=utcnow, onupdate=utcnow
    )
