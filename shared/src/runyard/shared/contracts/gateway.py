"""Events published by the API gateway (source ``/runyard/gateway``)."""

from __future__ import annotations

import uuid

from runyard.shared.events import EventPayload


class ApiKeyUsed(EventPayload):
    event_type = "api_key.used"
    key_id: uuid.UUID
    user_id: uuid.UUID | None = None
    method: str
    route: str
    status: int
    latency_ms: float
    ip_address: str | None = None
