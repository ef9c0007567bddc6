"""Events published by the webhooks service (source ``/runyard/webhooks``)."""

from __future__ import annotations

import uuid

from runyard.shared.events import EventPayload


class WebhookEndpointDisabled(EventPayload):
    event_type = "webhook.endpoint_disabled"
    webhook_id: uuid.UUID
    owner_id: uuid.UUID
    name: str
    url: str
    reason: str
    consecutive_failures: int = 0


class WebhookTest(EventPayload):
    """Sent only to one endpoint by ``POST /webhooks/{id}/test``; never put on Kafka."""

    event_type = "webhook.test"
    webhook_id: uuid.UUID
    message: str = "This is a test event from Runyard."
