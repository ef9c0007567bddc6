"""Events published by the webhooks service (source ``/runyard/webhooks``)."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict

from runyard.shared.events import EventPayload


class WebhookEndpointDisabled(EventPayload):
    event_type = "webhook.endpoint_disabled"
    webhook_id: uuid.UUID
    owner_id: uuid.UUID
    name: str
    url: str
    reason: str
    consecutive_failures: int = 0


class DeliveryOutcome(BaseModel):
    """One delivery whose status an attempt settled or kept pending (a retry is scheduled)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    delivery_id: uuid.UUID
    event_id: str
    event_type: str
    #: "succeeded" | "failed" (for good) | "pending" (the attempt failed, a retry is scheduled)
    status: str
    attempt_number: int
    #: the endpoint's HTTP answer (null: none, a connection error or timeout)
    status_code: int | None = None


class WebhookDeliveriesUpdated(EventPayload):
    """Attempts to an endpoint were recorded: one event per endpoint and short window
    (``WEBHOOKS_DELIVERY_EVENTS_WINDOW_S``), not per attempt. Never delivered to webhooks
    itself (it would feed on itself); the console refreshes an endpoint's deliveries on it."""

    event_type = "webhook.deliveries_updated"
    webhook_id: uuid.UUID
    #: the endpoint's owner
    owner_id: uuid.UUID
    #: attempts recorded in the window, and how the deliveries they settled ended
    attempts: int
    succeeded: int
    failed: int
    retrying: int
    #: the window's last deliveries (at most 20), oldest first
    latest: list[DeliveryOutcome] = []
    first_at: datetime
    last_at: datetime


class WebhookTest(EventPayload):
    """Sent only to one endpoint by ``POST /webhooks/{id}/test``; never put on Kafka."""

    event_type = "webhook.test"
    webhook_id: uuid.UUID
    message: str = "This is a test event from Runyard."
