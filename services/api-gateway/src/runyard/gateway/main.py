from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.staticfiles import StaticFiles
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

from runyard.gateway import admin, console
from runyard.gateway.api import (
    DOCS_ASSETS,
    DOCS_ASSETS_DIR,
    ProxyFastPath,
    check_upstreams,
    router,
)
from runyard.gateway.config import Settings
from runyard.gateway.context import (
    GatewayRuntime,
    GatewayState,
    build_state,
    close_state,
    start_log_writer,
)
from runyard.gateway.headers import EXPOSED_HEADERS, SecurityHeadersMiddleware
from runyard.gateway.metrics_port import remove_api_port_metrics, start_metrics_listener
from runyard.gateway.models import SCHEMA
from runyard.gateway.requestlog import RequestLogMiddleware
from runyard.gateway.workers import metrics_rollup
from runyard.shared.contracts.gateway import ApiKeyUsed
from runyard.shared.runtime import ServiceSpec, create_service_app


async def open_state(runtime: GatewayRuntime) -> GatewayState:
    admin_document = get_openapi(
        title="Runyard gateway", version="1.0.0", routes=admin.router.routes
    )

    async def own_document() -> dict[str, Any]:
        return admin_document

    settings = runtime.settings
    metrics = start_metrics_listener(settings.metrics_host, settings.metrics_port)
    state = build_state(settings, own_document=own_document)
    state.metrics = metrics
    state.log_writer = start_log_writer(runtime)
    return state


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    spec: ServiceSpec[Settings, GatewayState] = ServiceSpec(
        name="gateway",
        schema=SCHEMA,
        settings=settings,
        routers=[admin.router, router],
        workers={"metrics_rollup": metrics_rollup},
        publishes=[ApiKeyUsed],
        open_context=open_state,
        close_context=close_state,
        readiness_checks={"upstreams": check_upstreams},
        own_openapi=False,
        description="Single entry point: authentication, routing, merged API docs.",
    )
    app = create_service_app(spec)
    remove_api_port_metrics(app)  # served by the metrics listener (GATEWAY_METRICS_PORT) only
    app.mount(DOCS_ASSETS, StaticFiles(directory=DOCS_ASSETS_DIR), name="docs-assets")
    app.include_router(console.router)  # last: every path nothing above answers
    # inside the request-id middleware (added by create_service_app), outermost first
    inner = [Middleware(RequestLogMiddleware, sample_bytes=settings.request_log_sample_bytes)]
    if settings.cors_origins():
        inner.append(
            Middleware(
                CORSMiddleware,
                allow_origins=settings.cors_origins(),
                allow_credentials=settings.cors_allow_credentials,
                allow_methods=["*"],
                allow_headers=["*"],
                expose_headers=EXPOSED_HEADERS,
                max_age=settings.cors_max_age_s,
            )
        )
    if settings.security_headers_enabled:
        inner.append(Middleware(SecurityHeadersMiddleware, hsts_max_age_s=settings.hsts_max_age_s))
    inner.append(Middleware(ProxyFastPath))  # innermost: proxied requests skip the router
    app.user_middleware.extend(inner)
    return app
