"""The gateway's runtime objects: its typed context, opened at startup and closed at shutdown.

One pooled HTTP client serves every upstream; the JWKS cache, the credential checker, the
merged OpenAPI document, the circuit breakers, the rate-limit buckets and the request-log
writer all live here for the life of the process (``runtime.context``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from fastapi import Request

from runyard.gateway.auth import JwksCache, VerifiedTokens
from runyard.gateway.breaker import CircuitBreaker
from runyard.gateway.config import Settings
from runyard.gateway.credentials import CredentialChecker
from runyard.gateway.keyguard import FailedKeyLookups
from runyard.gateway.metrics_port import MetricsListener
from runyard.gateway.openapi import OpenApiAggregator
from runyard.gateway.proxy import IPNetwork, SignedHeaders, parse_networks
from runyard.gateway.ratelimit import TokenBuckets
from runyard.gateway.requestlog import RequestLogWriter
from runyard.shared.runtime import Runtime, get_runtime


@dataclass
class GatewayState:
    """The gateway's context: ``runtime.context`` (``gateway_state(request)`` in a route)."""

    settings: Settings
    http: aiohttp.ClientSession
    jwks: JwksCache
    openapi: OpenApiAggregator
    credentials: CredentialChecker
    breakers: dict[str, CircuitBreaker] = field(default_factory=dict)
    buckets: TokenBuckets = field(default_factory=TokenBuckets)
    trusted: list[IPNetwork] = field(default_factory=list)
    timeouts: dict[str, aiohttp.ClientTimeout] = field(default_factory=dict)
    log_writer: RequestLogWriter | None = None
    verified: VerifiedTokens = field(default_factory=VerifiedTokens)
    key_failures: FailedKeyLookups = field(default_factory=FailedKeyLookups)
    metrics: MetricsListener | None = None
    #: ``settings.upstreams()`` and the identity secret, read once rather than per request
    upstreams: dict[str, str] = field(default_factory=dict)
    identity_secret: str = ""
    signed: SignedHeaders = field(default_factory=SignedHeaders)

    def __post_init__(self) -> None:
        self.upstreams = self.upstreams or self.settings.upstreams()
        self.identity_secret = (
            self.identity_secret or self.settings.identity_secret.get_secret_value()
        )


GatewayRuntime = Runtime[Settings, GatewayState]


def gateway_state(request: Request) -> GatewayState:
    runtime: GatewayRuntime = get_runtime(request)
    return runtime.context


async def fetch_json(http: aiohttp.ClientSession, url: str, timeout_s: float) -> dict[str, Any]:
    async with http.get(url, timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
        resp.raise_for_status()
        document: dict[str, Any] = await resp.json(content_type=None)
        return document


def new_http_client(settings: Settings) -> aiohttp.ClientSession:
    """One pooled client for all upstreams: no cookie jar, no redirects, bodies relayed as-is."""
    return aiohttp.ClientSession(
        # Idle upstream connections are dropped well before the services close them (they keep
        # them 75 s; uvicorn's default is 5 s), so a request never goes out on a connection the
        # service is closing (a spurious 502).
        connector=aiohttp.TCPConnector(limit=settings.upstream_pool_size, keepalive_timeout=4.0),
        timeout=aiohttp.ClientTimeout(
            total=settings.upstream_timeout_s, connect=settings.upstream_connect_timeout_s
        ),
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        skip_auto_headers=("Accept-Encoding", "User-Agent"),
    )


def build_state(
    settings: Settings, *, own_document: Callable[[], Awaitable[dict[str, Any]]]
) -> GatewayState:
    """Everything but the request-log writer; ``own_document``: the admin paths' OpenAPI."""
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
    return GatewayState(
        key_failures=FailedKeyLookups(
            per_minute=settings.rate_limit_failed_api_keys_per_ip_per_minute
        ),
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
            basic_auth_cache_s=settings.basic_auth_cache_s,
        ),
    )


def start_log_writer(runtime: GatewayRuntime) -> RequestLogWriter | None:
    """The request-log writer, started (None when ``GATEWAY_REQUEST_LOG_ENABLED`` is off)."""
    settings = runtime.settings
    if not settings.request_log_enabled:
        return None
    writer = RequestLogWriter(
        runtime.sessionmaker,
        queue_size=settings.request_log_queue_size,
        batch_size=settings.request_log_batch_size,
        flush_interval_s=settings.request_log_flush_interval_s,
    )
    writer.start()
    return writer


async def close_state(state: GatewayState) -> None:
    """Write what the request log still holds, then close the upstream client and the metrics
    listener."""
    writer, state.log_writer = state.log_writer, None
    if writer is not None:
        await writer.stop()
    await state.http.close()
    metrics, state.metrics = state.metrics, None
    if metrics is not None:
        await metrics.close()
