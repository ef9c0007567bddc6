from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import fastapi_offline
from fastapi import APIRouter, Request, Response
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

from runyard.gateway.auth import IP_LIMITED_ROUTES, authenticate, is_public
from runyard.gateway.context import GatewayRuntime, GatewayState, gateway_state
from runyard.gateway.errors import InvalidApiKey
from runyard.gateway.keyguard import sends_api_key
from runyard.gateway.proxy import client_ip, forward, request_body, service_for
from runyard.gateway.ratelimit import Decision, check
from runyard.shared.http import problem_response
from runyard.shared.identity import Principal
from runyard.shared.logging import get_logger

PROXIED_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
DOCS_ASSETS = "/docs-assets"
DOCS_ASSETS_DIR = Path(fastapi_offline.__file__).parent / "static"


log = get_logger(__name__)

router = APIRouter()


@router.get("/openapi.json", include_in_schema=False)
async def merged_openapi(request: Request) -> JSONResponse:
    return JSONResponse(await gateway_state(request).openapi.document())


@router.get("/docs", include_in_schema=False)
async def swagger_ui() -> HTMLResponse:
    """Swagger UI from the assets bundled with fastapi-offline: no CDN needed."""
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="Runyard API",
        swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
        swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png",
    )


@router.get("/ready/upstreams", include_in_schema=False)
async def upstreams_ready(request: Request) -> Response:
    """Whether every service behind the gateway answers its ``/health``."""
    state = gateway_state(request)
    results = await upstream_health(state)
    circuits = {name: b.state.name.lower() for name, b in state.breakers.items()}
    if all(r == "ok" for r in results.values()):
        return JSONResponse({"status": "ready", "upstreams": results, "circuits": circuits})
    return problem_response(
        request,
        status=503,
        title="Service Unavailable",
        detail="an upstream service is not healthy",
        upstreams=results,
        circuits=circuits,
    )


async def upstream_health(state: GatewayState) -> dict[str, str]:
    """``ok`` or ``error`` per upstream; why one failed is logged, never answered (these answers
    reach the internet)."""
    timeout = aiohttp.ClientTimeout(total=state.settings.openapi_fetch_timeout_s)

    async def check_one(name: str, base_url: str) -> str:
        try:
            async with state.http.get(f"{base_url}/health", timeout=timeout) as resp:
                if resp.status == 200:
                    return "ok"
                log.warning("gateway.upstream.unhealthy", upstream=name, status=resp.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("gateway.upstream.unhealthy", upstream=name, error=repr(exc)[:300])
        return "error"

    upstreams = state.settings.upstreams()
    answers = await asyncio.gather(*(check_one(n, url) for n, url in upstreams.items()))
    return dict(zip(upstreams, answers, strict=True))


async def check_upstreams(runtime: GatewayRuntime) -> None:
    """``/ready`` fails while any service behind the gateway does not answer ``/health``."""
    results = await upstream_health(runtime.context)
    down = [name for name, result in results.items() if result != "ok"]
    if down:
        raise ConnectionError(f"upstreams not healthy: {', '.join(down)}")


def limit_caller(request: Request, state: GatewayState, principal: Principal) -> Decision | None:
    """Per API key (its own ``rate_limit``, else the default) or per user; 429 when empty."""
    settings = state.settings
    if not settings.rate_limit_enabled:
        return None
    if principal.api_key_id:
        limit = getattr(request.state, "api_key_rate_limit", None)
        return check(
            state.buckets,
            "api_key",
            principal.api_key_id,
            limit or settings.rate_limit_api_key_per_minute,
        )
    return check(state.buckets, "user", str(principal.user_id), settings.rate_limit_user_per_minute)


async def identify(request: Request, state: GatewayState, *, service: str) -> Principal:
    """The caller, or 401/403/503; 429 before any lookup once the client's IP has sent too many
    unknown API keys (``keyguard.py``)."""
    ip = client_ip(request, state.trusted)
    request.state.client_ip = ip
    by_key = sends_api_key(request)
    if by_key:
        state.key_failures.check(ip)
    try:
        return await authenticate(
            request,
            state.jwks,
            state.settings,
            state.credentials,
            service=service,
            verified=state.verified,
        )
    except InvalidApiKey:
        if by_key:
            state.key_failures.failed(ip)
        raise


@router.api_route("/api/v1/{path:path}", methods=PROXIED_METHODS, include_in_schema=False)
async def proxy(request: Request, path: str) -> Response:
    state = gateway_state(request)
    settings = state.settings
    ip = client_ip(request, state.trusted)
    request.state.client_ip = ip
    service = service_for(path)
    request.state.service = service
    principal = None
    decision = None
    if not is_public(request.method, request.url.path):
        principal = await identify(request, state, service=service)
        decision = limit_caller(request, state, principal)
    elif settings.rate_limit_enabled and (request.method, request.url.path) in IP_LIMITED_ROUTES:
        decision = check(state.buckets, "ip", ip, settings.rate_limit_login_per_ip_per_minute)
    body = await request_body(
        request, limit=settings.max_body_bytes, buffer_up_to=settings.stream_threshold_bytes
    )
    response = await forward(
        state.http,
        request,
        service=service,
        base_url=settings.upstreams()[service],
        body=body,
        principal=principal,
        identity_secret=settings.identity_secret.get_secret_value(),
        upstream_timeout=state.timeouts.get(path.split("/", 1)[0]),
        breaker=state.breakers.get(service),
        trusted=state.trusted,
        limit=settings.max_body_bytes,
    )
    if decision is not None:
        response.raw_headers += [
            (k.lower().encode(), v.encode()) for k, v in decision.headers().items()
        ]
    return response
