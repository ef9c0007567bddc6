"""Prometheus metrics of the webhooks service (served on ``/metrics``)."""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

from prometheus_client import Counter, Histogram
from prometheus_client.metrics import MetricWrapperBase

from runyard.webhooks.delivery import AttemptResult

ATTEMPTS = Counter(
    "runyard_webhook_delivery_attempts",
    "HTTP delivery attempts",
    ["provider", "trigger", "outcome"],
)
ATTEMPT_DURATION = Histogram(
    "runyard_webhook_delivery_duration_seconds",
    "Duration of one delivery attempt (connect to end of the bounded response read)",
    ["provider", "outcome"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30),
)
LAG = Histogram(
    "runyard_webhook_delivery_lag_seconds",
    "Event time to successful delivery (includes retries)",
    ["provider"],
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 7200, 36000, 86400),
)
SETTLED = Counter(
    "runyard_webhook_deliveries_settled",
    "Deliveries that reached a final status",
    ["provider", "status"],
)
ENQUEUED = Counter("runyard_webhook_deliveries_enqueued", "Deliveries created by fan-out")
MUTED = Counter(
    "runyard_webhook_deliveries_muted",
    "Deliveries not created because the owner muted the event type for that channel",
)
DISABLED = Counter(
    "runyard_webhook_endpoints_disabled", "Endpoints disabled automatically", ["reason"]
)


@functools.lru_cache(maxsize=512)
def labelled(metric: MetricWrapperBase, *values: str) -> Any:
    """``metric.labels(*values)``, looked up once (``labels()`` takes a lock and converts
    every value on each call: a cost per delivery)."""
    return metric.labels(*values)


def observe_attempt(provider: str, trigger: str, result: AttemptResult) -> None:
    labelled(ATTEMPTS, provider, trigger, result.outcome).inc()
    labelled(ATTEMPT_DURATION, provider, result.outcome).observe(result.duration_ms / 1000)


def observe_settled(provider: str, status: str) -> None:
    labelled(SETTLED, provider, status).inc()


def observe_lag(provider: str, event_time: Any, now: datetime) -> None:
    if not isinstance(event_time, str):
        return
    try:
        sent = datetime.fromisoformat(event_time.replace("Z", "+00:00"))
    except ValueError:
        return
    labelled(LAG, provider).observe(max(0.0, (now - sent).total_seconds()))
