"""Events of alert rules, published by the experiments service (source ``/runyard/experiments``).

A rule of a user (threshold, not finite, plateau, divergence, overfitting gap, lifecycle) fired
for one of their experiments, or a re-arming rule's condition cleared. ``summary`` is the line a
person reads ("val_loss diverged in pump-cnn: +38 % over 5 epochs (epoch 41)").
"""

from __future__ import annotations

import uuid
from typing import Any

from runyard.shared.events import EventPayload


class _AlertEvent(EventPayload):
    #: the alert's record (``GET /api/v1/alerts``)
    alert_id: uuid.UUID
    rule_id: uuid.UUID
    rule_name: str
    #: threshold, not_finite, plateau, divergence, gap or lifecycle
    kind: str
    #: info, warning or critical
    severity: str
    owner_id: uuid.UUID
    experiment_id: uuid.UUID
    #: the experiment's name
    name: str
    project_id: uuid.UUID | None = None
    #: the epoch that fired (or cleared) the rule; null for a lifecycle rule
    epoch: int | None = None
    #: the metric values behind it (the metric, its reference value, the change ...)
    values: dict[str, Any] = {}
    summary: str


class AlertTriggered(_AlertEvent):
    event_type = "alert.triggered"


class AlertResolved(_AlertEvent):
    """A re-arming rule's condition no longer holds for the experiment."""

    event_type = "alert.resolved"
