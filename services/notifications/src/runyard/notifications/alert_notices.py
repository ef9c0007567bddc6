"""The context of an alert rule's email (``alert.triggered``, ``alert.resolved``): the rule's
summary line first ("val_loss diverged in pump-cnn: +38 % over 5 epochs (epoch 41)"), then the
rule, the experiment, the epoch and the values behind it."""

from __future__ import annotations

from typing import Any

from runyard.notifications.formatting import facts, format_local
from runyard.notifications.models import User
from runyard.shared.contracts.alerts import AlertResolved, AlertTriggered
from runyard.shared.events import CloudEvent

KIND_LABELS = {
    "threshold": "threshold",
    "not_finite": "not finite",
    "plateau": "plateau",
    "divergence": "divergence",
    "gap": "overfitting gap",
    "lifecycle": "lifecycle",
}


def _value(value: Any) -> Any:
    return f"{value:.4g}" if isinstance(value, float) else value


def alert_context(
    event: CloudEvent, payload: AlertTriggered | AlertResolved, user: User
) -> dict[str, Any]:
    return {
        "alert": {
            "summary": payload.summary,
            "rule": payload.rule_name,
            "severity": payload.severity,
            "experiment": payload.name,
        },
        "facts": facts(
            ("Rule", f"{payload.rule_name} ({KIND_LABELS.get(payload.kind, payload.kind)})"),
            ("Severity", payload.severity),
            ("Experiment", payload.name),
            ("Experiment ID", payload.experiment_id),
            ("Epoch", payload.epoch),
            *[(name, _value(value)) for name, value in sorted(payload.values.items())],
            ("When", format_local(event.time, user.timezone)),
        ),
    }
