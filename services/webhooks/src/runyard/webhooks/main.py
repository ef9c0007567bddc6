from __future__ import annotations

from fastapi import FastAPI

from runyard.shared.contracts.webhooks import WebhookEndpointDisabled
from runyard.shared.runtime import ServiceSpec, create_service_app
from runyard.webhooks import consumers, workers
from runyard.webhooks.api import router
from runyard.webhooks.config import Settings
from runyard.webhooks.models import SCHEMA


def create_app(settings: Settings | None = None) -> FastAPI:
    return create_service_app(
        ServiceSpec(
            name="webhooks",
            schema=SCHEMA,
            settings=settings or Settings(),
            routers=[router],
            handlers=consumers.handlers(),
            workers={"delivery": workers.delivery_worker},
            publishes=[WebhookEndpointDisabled],
            description="Signed HTTP deliveries of events to Slack, Teams and any endpoint.",
        )
    )
