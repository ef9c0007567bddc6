"""Tables of the prediction log (migration 0014), in the experiments schema.

- ``predictions``: one row per logged prediction, **partitioned by month** (``RANGE (time)``;
  the partitions ``predictions_YYYY_MM`` are made and dropped by ``partitions.py``, never by
  the models). The primary key ``(version_id, time, id)`` holds the partition key and is the one
  index: it serves the newest-first pages and every time-window read of one version. No foreign
  key to ``model_versions``: a per-row check would cost every insert; the version is checked
  once per request, and rows of a deleted version leave with their partitions.
- ``prediction_rollups``: per version and minute (``grain`` 60) and hour (3600): count, errors,
  latency sum and histograms of confidence and latency, added to by the request that inserts
  the rows, so a stats read over a month reads ~1,000 rollup rows instead of millions.
- ``prediction_drift``: per version, the last drift check and the last
  ``model_version.drift_detected`` (the cooldown).
- ``prediction_batches`` (migration 0016): per model owner and client-made batch id (the
  request's ``Idempotency-Key``), the version, row count and body digest of the batch stored
  under it, written in the transaction that stores the rows: a repeat answers like the first and
  stores nothing. One row per batch; dropped with the months the log no longer keeps.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Float,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from runyard.experiments.models import SCHEMA, Base

ID_SEQUENCE = f"{SCHEMA}.predictions_id_seq"


class Prediction(Base):
    __tablename__ = "predictions"
    __table_args__ = (
        CheckConstraint("confidence >= 0 AND confidence <= 1", name="confidence_range"),
        CheckConstraint("latency_ms >= 0", name="latency_not_negative"),
        {"postgresql_partition_by": "RANGE (time)"},
    )

    version_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    time: Mapped[datetime] = mapped_column(primary_key=True)
    id: Mapped[int] = mapped_column(
        BigInteger, primary_key=True, server_default=text(f"nextval('{ID_SEQUENCE}')")
    )
    input: Mapped[Any] = mapped_column(JSONB, nullable=True)
    output: Mapped[Any] = mapped_column(JSONB, nullable=True)
    confidence: Mapped[float | None] = mapped_column(Float)
    latency_ms: Mapped[float] = mapped_column(Float)
    #: set: the prediction failed (its error message); what the error rate counts
    error: Mapped[str | None] = mapped_column(Text)


class PredictionRollup(Base):
    __tablename__ = "prediction_rollups"
    __table_args__ = (
        # the drift worker's "versions with predictions in the window"
        Index("ix_prediction_rollups_hours", "start", postgresql_where=text("grain = 3600")),
    )

    version_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    #: seconds the row covers: 60 (a minute) or 3600 (an hour)
    grain: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    start: Mapped[datetime] = mapped_column(primary_key=True)
    n: Mapped[int] = mapped_column(BigInteger)
    errors: Mapped[int] = mapped_column(BigInteger)
    latency_sum: Mapped[float] = mapped_column(Float)
    confidence_null: Mapped[int] = mapped_column(BigInteger)
    #: counts per confidence bucket (``histograms.CONFIDENCE_BUCKETS``)
    confidence: Mapped[list[int]] = mapped_column(ARRAY(BigInteger))
    #: counts per latency bucket (``histograms.LATENCY_BUCKETS``, log-spaced)
    latency: Mapped[list[int]] = mapped_column(ARRAY(BigInteger))


class PredictionDrift(Base):
    __tablename__ = "prediction_drift"

    version_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    checked_at: Mapped[datetime]
    psi: Mapped[float | None] = mapped_column(Float)
    #: the last model_version.drift_detected (null: never)
    alerted_at: Mapped[datetime | None]


class PredictionBatch(Base):
    __tablename__ = "prediction_batches"

    #: the model's owner: a key is unique among the batches of one owner's models
    owner_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    version_id: Mapped[uuid.UUID]
    count: Mapped[int] = mapped_column(Integer)
    #: SHA-256 of the request body: the same key with another body is refused
    body_sha256: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now(), index=True)
