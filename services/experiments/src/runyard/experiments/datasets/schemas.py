"""Request and response bodies of datasets and signals."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from runyard.experiments.schemas import Finite, Input, JsonObject, Label, Name, Path

MAX_SIGNALS_PER_REQUEST = 10_000


class DatasetCreate(Input):
    name: Name
    description: str | None = Field(default=None, max_length=10_000)
    fault_types: list[Label] = Field(default_factory=list, max_length=200)
    severity_levels: list[Label] = Field(default_factory=list, max_length=200)
    file_path: Path | None = None
    meta_data: JsonObject = Field(default_factory=dict)


class DatasetUpdate(Input):
    name: Name | None = None
    description: str | None = Field(default=None, max_length=10_000)
    fault_types: list[Label] | None = Field(default=None, max_length=200)
    severity_levels: list[Label] | None = Field(default=None, max_length=200)
    file_path: Path | None = None
    meta_data: JsonObject | None = None


class DatasetOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    owner_id: uuid.UUID
    name: str
    description: str | None
    num_signals: int
    fault_types: list[str]
    severity_levels: list[str]
    file_path: str | None
    meta_data: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class SignalIn(Input):
    signal_id: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    fault_class: Label | None = None
    severity: Annotated[str, StringConstraints(min_length=1, max_length=50)] | None = None
    file_path: Path | None = None
    rms: Finite | None = Field(default=None, ge=0)
    kurtosis: Finite | None = None
    dominant_frequency: Finite | None = Field(default=None, ge=0)


class SignalBatch(Input):
    signals: list[SignalIn] = Field(min_length=1, max_length=MAX_SIGNALS_PER_REQUEST)


class SignalBatchResult(BaseModel):
    dataset_id: uuid.UUID
    received: int
    inserted: int
    #: signal ids the dataset already had (a retried request inserts nothing twice)
    skipped: int
    num_signals: int


class SignalOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    dataset_id: uuid.UUID
    signal_id: str
    fault_class: str | None
    severity: str | None
    file_path: str | None
    rms: float | None
    kurtosis: float | None
    dominant_frequency: float | None
    created_at: datetime


class SamplesOut(BaseModel):
    """One signal's stored samples downsampled for a chart: per bucket of consecutive samples
    its lowest and highest value (peaks survive), like an experiment's history."""

    dataset_id: uuid.UUID
    signal_id: str
    sample_rate_hz: float
    #: samples the signal holds
    num_samples: int
    #: buckets asked for; a range of fewer samples has one bucket per sample
    buckets: int
    #: the first and last sample of the range read (null: the range holds none)
    from_index: int | None
    to_index: int | None
    #: per bucket: its first sample's index (seconds: index / sample_rate_hz)
    index: list[int]
    min: list[float]
    max: list[float]
