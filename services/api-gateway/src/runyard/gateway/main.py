from __future__ import annotations

from typing import Any

import aiohttp
from fastapi import FastAPI

from runyard.gateway.api import GatewayState, router
from runyard.gateway.auth import JwksCache
from runyard.gateway.config import Settings
from runyard.gateway.credentials import CredentialChecker
from runyard.gateway.models import SCHEMA
from runyard.gateway.openapi import OpenApiAggregator
from runyard.shared.runtime import Runtime, ServiceSpec, create_service_app


async def fetch_json(http: aiohttp.ClientSession, url: str, timeout_s: float) -> dict[str, Any]:
    async with http.get(url, timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
        resp.raise_for_status()
        document: dict[str, Any] = await resp.json(content_type=None)
        return document


def new_http_client(settings: Settings) -> aiohttp.ClientSession:
    """One pooled client for all upstreams: no cookie jar, no redirects, bodies relayed as-is."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=settings.upstream_pool_size),
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

    return GatewayState(
        settings=settings,
        http=http,
        jwks=JwksCache(
            fetch_jwks,
            min_refresh_interval_s=settings.jwks_min_refresh_interval_s,
            max_age_s=settings.jwks_max_age_s,
        ),
        openapi=OpenApiAggregator(
            settings.upstreams(), fetch_openapi, ttl_s=settings.openapi_cache_s
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
        runtime.state["gateway"] = build_state(settings)

    async def on_shutdown(runtime: Runtime) -> None:
        state: GatewayState | None = runtime.state.pop("gateway", None)
        if state is not None:
            await state.http.close()

    app = create_service_app(
        ServiceSpec(
            name="gateway",
            schema=SCHEMA,
            settings=settings,
            routers=[router],
            on_startup=on_startup,
            on_shutdown=on_shutdown,
            readiness_checks={"upstreams": check_upstreams},
            own_openapi=False,
            description="Single entry point: authentication, routing, merged API docs.",
        )
    )
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
