from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ExperimentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=255)
    description: str | None = Field(default=None, max_length=10_000)
    model_type: str | None = Field(default=None, max_length=100)
    dataset_id: uuid.UUID | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    hyperparameters: dict[str, Any] = Field(default_factory=dict)


class ExperimentComplete(BaseModel):
    model_config = ConfigDict(extra="forbid")

    final_metrics: dict[str, float] = Field(default_factory=dict)
    best_epoch: int | None = Field(default=None, ge=0)
    total_epochs: int | None = Field(default=None, ge=0)


class ExperimentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    description: str | None
    owner_id: uuid.UUID
    model_type: str | None
    dataset_id: uuid.UUID | None
    status: str
    config: dict[str, Any]
    hyperparameters: dict[str, Any]
    metrics: dict[str, Any]
    best_epoch: int | None
    total_epochs: int
    started_at: datetime | None
    ended_at: datetime | None
    created_at: datetime
    updated_at: datetime
