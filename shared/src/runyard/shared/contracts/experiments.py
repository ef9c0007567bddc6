"""Events published by the experiments service (source ``/runyard/experiments``)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from runyard.shared.events import EventPayload


class DatasetCreated(EventPayload):
    event_type = "dataset.created"
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


class ExperimentCreated(_ExperimentEvent):
    event_type = "experiment.created"


class ExperimentStarted(_ExperimentEvent):
    event_type = "experiment.started"
    started_at: datetime | None = None


class ExperimentPaused(_ExperimentEvent):
    event_type = "experiment.paused"


class ExperimentResumed(_ExperimentEvent):
    event_type = "experiment.resumed"


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
