"""Request and response bodies of dataset generation and import jobs."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from runyard.experiments.schemas import Finite, Input, Name

MAX_GENERATED_SIGNALS = 100_000
MAX_SAMPLES_PER_SIGNAL = 1_000_000

FaultClass = Literal["normal", "imbalance", "misalignment", "bearing_defect", "cavitation"]
Severity = Literal["mild", "moderate", "severe"]


class GenerationCreate(Input):
    name: Name
    #: the dataset to create (default: the job's name); must not exist yet
    dataset_name: Name | None = None
    description: str | None = Field(default=None, max_length=10_000)
    fault_classes: list[FaultClass] = Field(
        default=["normal", "imbalance", "misalignment", "bearing_defect", "cavitation"],
        min_length=1,
        max_length=5,
    )
    severities: list[Severity] = Field(
        default=["mild", "moderate", "severe"], min_length=1, max_length=3
    )
    #: signals per (fault class, severity); ``normal`` has one severity, ``none``
    signals_per_combination: int = Field(default=10, ge=1, le=10_000)
    sample_rate_hz: Finite = Field(default=10_240.0, ge=100, le=1_000_000)
    duration_s: Finite = Field(default=1.0, gt=0, le=60)
    #: 1500 rpm
    shaft_frequency_hz: Finite = Field(default=25.0, gt=0, le=1_000)
    noise_std: Finite = Field(default=0.05, ge=0, le=10)
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1)

    @model_validator(mode="after")
    def _check(self) -> GenerationCreate:
        if len(set(self.fault_classes)) != len(self.fault_classes):
            raise ValueError("fault_classes must be distinct")
        if len(set(self.severities)) != len(self.severities):
            raise ValueError("severities must be distinct")
        if self.sample_rate_hz * self.duration_s > MAX_SAMPLES_PER_SIGNAL:
            raise ValueError(f"at most {MAX_SAMPLES_PER_SIGNAL} samples per signal")
        if self.shaft_frequency_hz * 3 >= self.sample_rate_hz / 2:
            raise ValueError("the 3rd shaft harmonic must lie below the Nyquist frequency")
        return self


class ImportFromPath(Input):
    name: Name
    dataset_name: Name | None = None
    description: str | None = Field(default=None, max_length=10_000)
    #: a .csv or .npz file, or a directory of them, of the caller's uploads: relative to the
    #: service's data directory and inside ``uploads/<caller's user id>/``
    path: str = Field(min_length=1, max_length=1024)
    #: used for the features when a file does not carry its own
    sample_rate_hz: Finite = Field(default=10_240.0, ge=1, le=1_000_000)


class JobOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    owner_id: uuid.UUID
    name: str
    config: dict[str, Any]
    #: pending | running | completed | failed | cancelled
    status: str
    #: percent done
    progress: int
    num_signals: int
    output_path: str | None
    dataset_id: uuid.UUID | None
    error_message: str | None
    errors: list[dict[str, Any]]
    cancel_requested: bool
    attempts: int
    started_at: datetime | None
    ended_at: datetime | None
    duration_seconds: float | None
    created_at: datetime
    updated_at: datetime


class GenerationOut(JobOut):
    num_faults: int


class ImportOut(JobOut):
    num_files: int
