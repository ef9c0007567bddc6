from __future__ import annotations

from typing import Any

import aiohttp
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.staticfiles import StaticFiles
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

from runyard.gateway import admin
from runyard.gateway.api import DOCS_ASSETS, DOCS_ASSETS_DIR, GatewayState, router
from runyard.gateway.auth import JwksCache
from runyard.gateway.breaker import CircuitBreaker
from runyard.gateway.config import Settings
from runyard.gateway.credentials import CredentialChecker
from runyard.gateway.headers import EXPOSED_HEADERS, SecurityHeadersMiddleware
from runyard.gateway.models import SCHEMA
from runyard.gateway.openapi import OpenApiAggregator
from runyard.gateway.proxy import parse_networks
from runyard.gateway.requestlog import RequestLogMiddleware, RequestLogWriter
from runyard.gateway.workers import metrics_rollup
from runyard.shared.contracts.gateway import ApiKeyUsed
from runyard.shared.runtime import Runtime, ServiceSpec, create_service_app


async def fetch_json(http: aiohttp.ClientSession, url: str, timeout_s: float) -> dict[str, Any]:
    async with http.get(url, timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
        resp.raise_for_status()
        document: dict[str, Any] = await resp.json(content_type=None)
        return document


def new_http_client(settings: Settings) -> aiohttp.ClientSession:
    """One pooled client for all upstreams: no cookie jar, no redirects, bodies relayed as-is."""
    return aiohttp.ClientSession(
        # Idle upstream connections are dropped before uvicorn's 5 s keep-alive closes them, so
        # a request never goes out on a connection the service is closing (a spurious 502).
        connector=aiohttp.TCPConnector(limit=settings.upstream_pool_size, keepalive_timeout=4.0),
        timeout=aiohttp.ClientTimeout(
            total=settings.upstream_timeout_s, connect=settings.upstream_connect_timeout_s
        ),
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        skip_auto_headers=("Accept-Encoding", "User-Agent"),
    )


def build_state(settings: Settings) -> GatewayState:
    http = new_http_client(settings)
    timeout_s = settings.openapi_fetch_timeout_s

    async def fetch_jwks() -> dict[str, Any]:
        return await fetch_json(http, settings.jwks_endpoint(), timeout_s)

    async def fetch_openapi(_service: str, base_url: str) -> dict[str, Any]:
        return await fetch_json(http, f"{base_url}/openapi.json", timeout_s)

    breakers = {
        name: CircuitBreaker(
            name, threshold=settings.circuit_failure_threshold, open_s=settings.circuit_open_s
        )
        for name in settings.upstreams()
    }
    timeouts = {
        area: aiohttp.ClientTimeout(total=seconds, connect=settings.upstream_connect_timeout_s)
        for area, seconds in settings.area_timeouts().items()
    }
    admin_document = get_openapi(
        title="Runyard gateway", version="1.0.0", routes=admin.router.routes
    )

    async def own_document() -> dict[str, Any]:
        return admin_document

    return GatewayState(
        breakers=breakers,
        trusted=parse_networks(settings.trusted_proxies),
        timeouts=timeouts,
        settings=settings,
        http=http,
        jwks=JwksCache(
            fetch_jwks,
            min_refresh_interval_s=settings.jwks_min_refresh_interval_s,
            max_age_s=settings.jwks_max_age_s,
        ),
        openapi=OpenApiAggregator(
            settings.upstreams(), fetch_openapi, ttl_s=settings.openapi_cache_s, own=own_document
        ),
        credentials=CredentialChecker(
            http,
            auth_url=settings.auth_url,
            secret=settings.identity_secret.get_secret_value(),
            api_key_cache_s=settings.api_key_cache_s,
            session_cache_s=settings.session_cache_s,
            timeout_s=settings.internal_timeout_s,
        ),
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    async def on_startup(runtime: Runtime) -> None:
        state = build_state(settings)
        if settings.request_log_enabled:
            state.log_writer = RequestLogWriter(
                runtime.sessionmaker,
                queue_size=settings.request_log_queue_size,
                batch_size=settings.request_log_batch_size,
                flush_interval_s=settings.request_log_flush_interval_s,
            )
            state.log_writer.start()
        runtime.state["gateway"] = state

    async def on_shutdown(runtime: Runtime) -> None:
        state: GatewayState | None = runtime.state.pop("gateway", None)
        if state is not None:
            if state.log_writer is not None:
                await state.log_writer.stop()
            await state.http.close()

    app = create_service_app(
        ServiceSpec(
            name="gateway",
            schema=SCHEMA,
            settings=settings,
            routers=[admin.router, router],
            workers={"metrics_rollup": metrics_rollup},
            publishes=[ApiKeyUsed],
            on_startup=on_startup,
            on_shutdown=on_shutdown,
            readiness_checks={"upstreams": check_upstreams},
            own_openapi=False,
            description="Single entry point: authentication, routing, merged API docs.",
        )
    )
    app.mount(DOCS_ASSETS, StaticFiles(directory=DOCS_ASSETS_DIR), name="docs-assets")
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
    app.user_middleware.extend(inner)
    return app


async def check_upstreams(runtime: Runtime) -> None:
    """``/ready`` fails while any service behind the gateway does not answer ``/health``."""
    state: GatewayState = runtime.state["gateway"]
    timeout = aiohttp.ClientTimeout(total=state.settings.openapi_fetch_timeout_s)
    down = []
    for name, base_url in state.settings.upstreams().items():
        try:
            async with state.http.get(f"{base_url}/health", timeout=timeout) as resp:
                if resp.status != 200:
                    down.append(f"{name}: HTTP {resp.status}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            down.append(f"{name}: {type(exc).__name__}")
    if down:
        raise ConnectionError("; ".join(down))
