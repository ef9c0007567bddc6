from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, String, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from runyard.shared.db import Timestamps, UUIDPrimaryKey, make_base
from runyard.shared.inbox import inbox_table
from runyard.shared.outbox import outbox_table

SCHEMA = "experiments"
Base = make_base(SCHEMA)
outbox = outbox_table(Base.metadata)
inbox = inbox_table(Base.metadata)


class Experiment(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "experiments"

    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    owner_id: Mapped[uuid.UUID] = mapped_column(index=True)
    model_type: Mapped[str | None] = mapped_column(String(100))
    dataset_id: Mapped[uuid.UUID | None]
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
