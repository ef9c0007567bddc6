from __future__ import annotations

from functools import partial

from fastapi import FastAPI

from runyard.shared.contracts.webhooks import WebhookDeliveriesUpdated, WebhookEndpointDisabled
from runyard.shared.runtime import ServiceSpec, WorkSignal, create_service_app
from runyard.webhooks import consumers, workers
from runyard.webhooks.api import router
from runyard.webhooks.config import Settings
from runyard.webhooks.context import Context, close_context, open_context
from runyard.webhooks.handoff import Handoff
from runyard.webhooks.models import SCHEMA
from runyard.webhooks.ssrf import Lookup


def create_app(settings: Settings | None = None, *, lookup: Lookup | None = None) -> FastAPI:
    """``lookup`` replaces the system DNS resolver (tests point host names at chosen
    addresses with ``ssrf.StaticLookup``)."""
    settings = settings or Settings()
    # fan-out hands new deliveries to this process's delivery worker (when it runs)
    handoff = Handoff.from_settings(settings)
    # the delivery worker's results commits wake the delivery-events worker
    recorded = WorkSignal()
    return create_service_app(
        ServiceSpec[Settings, Context](
            name="webhooks",
            schema=SCHEMA,
            settings=settings,
            routers=[router],
            handlers=consumers.handlers(handoff),
            workers={
                "delivery": partial(workers.delivery_worker, handoff=handoff, recorded=recorded),
                "delivery-events": partial(workers.delivery_events_worker, recorded=recorded),
            },
            publishes=[WebhookEndpointDisabled, WebhookDeliveriesUpdated],
            open_context=partial(open_context, lookup=lookup),
            close_context=close_context,
            description="Signed HTTP deliveries of events to Slack, Teams and any endpoint.",
        )
    )
