from __future__ import annotations

from fastapi import FastAPI

from runyard.shared.contracts.webhooks import WebhookEndpointDisabled
from runyard.shared.runtime import Runtime, ServiceSpec, create_service_app
from runyard.webhooks import consumers, workers
from runyard.webhooks.api import router
from runyard.webhooks.config import Settings
from runyard.webhooks.models import SCHEMA
from runyard.webhooks.ssrf import Lookup, SystemLookup


def create_app(settings: Settings | None = None, *, lookup: Lookup | None = None) -> FastAPI:
    """``lookup`` replaces the system DNS resolver (tests point host names at chosen
    addresses with ``ssrf.StaticLookup``)."""
    settings = settings or Settings()

    async def on_startup(runtime: Runtime) -> None:
        resolver = lookup or SystemLookup(timeout_s=settings.dns_timeout_s)
        runtime.state["lookup"] = resolver
        runtime.state["http"] = workers.new_http_session(settings, resolver)

    async def on_shutdown(runtime: Runtime) -> None:
        http = runtime.state.pop("http", None)
        if http is not None:
            await http.close()

    return create_service_app(
        ServiceSpec(
            name="webhooks",
            schema=SCHEMA,
            settings=settings,
            routers=[router],
            handlers=consumers.handlers(),
            workers={"delivery": workers.delivery_worker},
            publishes=[WebhookEndpointDisabled],
            on_startup=on_startup,
            on_shutdown=on_shutdown,
            description="Signed HTTP deliveries of events to Slack, Teams and any endpoint.",
        )
    )
