from __future__ import annotations

import asyncio
import inspect
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import fastapi_offline
from fastapi import APIRouter, Request, Response
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from runyard.gateway.auth import IP_LIMITED_ROUTES, authenticate, is_public
from runyard.gateway.context import GatewayRuntime, GatewayState, gateway_state
from runyard.gateway.errors import InvalidApiKey
from runyard.gateway.keyguard import sends_api_key
from runyard.gateway.mlflow import (
    MLFLOW_AREA,
    MLFLOW_PATHS,
    MLFLOW_PREFIXES,
    MlflowMethodNotAllowed,
    in_mlflow_zone,
    is_mlflow_upload,
    merged_mlflow_path,
    merged_path_redirect,
    mlflow_error_response,
    mlflow_prefix,
    route_mlflow,
)
from runyard.gateway.proxy import (
    ADMIN_PREFIX,
    API_PREFIX,
    client_ip,
    forward,
    request_body,
    service_for,
)
from runyard.gateway.ratelimit import Decision, check
from runyard.shared.http import ProblemError, problem_response
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


async def identify(
    request: Request,
    state: GatewayState,
    *,
    service: str,
    ip: str | None = None,
    basic: bool = False,
) -> Principal:
    """The caller, or 401/403/503; 429 before any lookup once the client's IP has sent too many
    unknown API keys (``keyguard.py``). ``ip``: the client address when already resolved.
    ``basic``: Basic credentials are accepted (MLflow paths); each login they cause takes a
    token of the client's login bucket, like ``POST /auth/login``."""
    if ip is None:
        ip = client_ip(request, state.trusted)
        request.state.client_ip = ip
    client = ip
    settings = state.settings
    by_key = sends_api_key(request)
    if by_key:
        state.key_failures.check(ip)

    def before_login() -> None:
        if settings.rate_limit_enabled:
            check(state.buckets, "ip", client, settings.rate_limit_login_per_ip_per_minute)

    try:
        return await authenticate(
            request,
            state.jwks,
            settings,
            state.credentials,
            service=service,
            verified=state.verified,
            basic=basic,
            client_ip=ip,
            before_login=before_login,
        )
    except InvalidApiKey:
        if by_key:
            state.key_failures.failed(ip)
        raise


PROXY_PATH = "/api/v1/{path:path}"


@router.api_route(PROXY_PATH, methods=PROXIED_METHODS, include_in_schema=False)
async def proxy(request: Request, path: str) -> Response:
    """Reached through the router only for what ``ProxyFastPath`` lets pass (a path under
    ``/api/v1/admin`` that no admin route takes, a newline in the path, a ``root_path``);
    every other proxied request takes the fast path to ``proxy_request``."""
    return await proxy_request(request, gateway_state(request), path)


async def proxy_request(request: Request, state: GatewayState, path: str) -> Response:
    """Identify the caller, apply the rate limits, forward to the owning service, relay."""
    scope = request.scope
    ip = client_ip(request, state.trusted)
    request_state = scope.setdefault("state", {})
    request_state["client_ip"] = ip
    service = service_for(path)
    request_state["service"] = service
    method: str = scope["method"]
    # the public routes are plain paths: equal to scope["path"] exactly when to request.url.path
    # (which also escapes "?", "#" and "\\"), without building the URL
    route_path: str = scope["path"]
    return await relay(
        request,
        state,
        service=service,
        ip=ip,
        area=path.split("/", 1)[0],
        upload=method == "PUT" and is_artifact_upload(path),
        public=is_public(method, route_path),
        ip_limited=(method, route_path) in IP_LIMITED_ROUTES,
    )


async def mlflow_request(request: Request, state: GatewayState) -> Response:
    """An MLflow path (``mlflow.py``): forwarded unchanged, never public, Basic accepted."""
    scope = request.scope
    ip = client_ip(request, state.trusted)
    request_state = scope.setdefault("state", {})
    request_state["client_ip"] = ip
    method: str = scope["method"]
    path: str = scope["path"]
    service = route_mlflow(path)
    if method not in _FAST_METHODS:
        raise MlflowMethodNotAllowed(method)
    request_state["service"] = service
    return await relay(
        request,
        state,
        service=service,
        ip=ip,
        area=MLFLOW_AREA,
        upload=is_mlflow_upload(method, path),
        basic=True,
    )


async def relay(
    request: Request,
    state: GatewayState,
    *,
    service: str,
    ip: str,
    area: str,
    upload: bool,
    public: bool = False,
    ip_limited: bool = False,
    basic: bool = False,
) -> Response:
    """The common part of every proxied request: identify (unless ``public``), rate-limit, read
    or stream the body (``upload``: the artifact limit and timeout), forward, relay."""
    settings = state.settings
    principal = None
    decision = None
    if not public:
        principal = await identify(request, state, service=service, ip=ip, basic=basic)
        decision = limit_caller(request, state, principal)
    elif settings.rate_limit_enabled and ip_limited:
        decision = check(state.buckets, "ip", ip, settings.rate_limit_login_per_ip_per_minute)
    limit = settings.max_upload_bytes if upload else settings.max_body_bytes
    body = await request_body(request, limit=limit, buffer_up_to=settings.stream_threshold_bytes)
    response = await forward(
        state.http,
        request,
        service=service,
        base_url=state.upstreams[service],
        body=body,
        principal=principal,
        identity_secret=state.identity_secret,
        upstream_timeout=(
            aiohttp.ClientTimeout(
                total=settings.upload_timeout_s, connect=settings.upstream_connect_timeout_s
            )
            if upload
            else state.timeouts.get(area)
            if state.timeouts
            else None
        ),
        breaker=state.breakers.get(service),
        trusted=state.trusted,
        limit=limit,
        client=ip,
        signed=state.signed,
    )
    if decision is not None:
        response.raw_headers += decision.raw_headers()
    return response


_ARTIFACT_UPLOAD = re.compile(r"experiments/[^/]+/artifacts/.+")


def is_artifact_upload(path: str) -> bool:
    """``path`` (after ``/api/v1/``) names an experiment's artifact, the one streamed upload."""
    return _ARTIFACT_UPLOAD.fullmatch(path) is not None


_PROXY_ROUTE = next(r for r in router.routes if getattr(r, "path", None) == PROXY_PATH)
_FAST_METHODS = frozenset(PROXIED_METHODS)


@dataclass(frozen=True)
class RouteLabel:
    """What the latency metrics read of a route (its ``path``) for the MLflow paths, which
    have no route of the router."""

    path: str


_MLFLOW_ROUTES = {
    **{prefix: RouteLabel(prefix + "{path}") for prefix in MLFLOW_PREFIXES},
    **{path: RouteLabel(path) for path in MLFLOW_PATHS},
}


class ProxyFastPath:
    """Proxied requests (``/api/v1/<area>/...``) straight to ``proxy_request``, as pure ASGI.

    Through FastAPI each one would pass the exception and exit-stack middlewares, be matched
    against every route, get its dependencies solved and its response wrapped several times;
    for a request whose whole work is one hop that was a good part of the gateway's CPU. The
    result is the same: errors are rendered by the app's own exception handlers (an error
    without one goes on to the server error middleware, as from a route), and the request is
    labelled with the proxy route in the latency metrics. Whatever the proxy route would not
    take (the admin paths, other methods, a ``root_path``, a newline in the path) goes on to the
    router as before. Innermost of the gateway's middlewares: request id, request log, CORS and
    security headers see every request as they did.

    Every path of the MLflow zone (``mlflow.py``) is taken here too, whatever its method, and
    never reaches the router: the gateway's own errors there are in MLflow's shape. So is a
    path whose repeated slashes merge into an MLflow path: redirected there, unauthenticated."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] == "http" and not scope.get("root_path"):
            if "//" in path and (merged := merged_mlflow_path(path)) is not None:
                await self._merged(scope, receive, send, merged)
                return
            if in_mlflow_zone(path):
                await self._mlflow(scope, receive, send)
                return
        if (
            scope["type"] != "http"
            or not path.startswith(API_PREFIX)
            or path.startswith(ADMIN_PREFIX)
            or scope["method"] not in _FAST_METHODS
            or scope.get("root_path")
            or "\n" in path
        ):
            await self.app(scope, receive, send)
            return
        app = scope["app"]
        scope["route"] = _PROXY_ROUTE
        request = Request(scope, receive)
        try:
            response = await proxy_request(
                request, app.state.runtime.context, path[len(API_PREFIX) :]
            )
        except Exception as exc:
            handler = _exception_handler(app.exception_handlers, exc)
            if handler is None:
                raise
            response = handler(request, exc)
            if inspect.isawaitable(response):
                response = await response
        await response(scope, receive, send)

    @staticmethod
    async def _merged(scope: Scope, receive: Receive, send: Send, merged: str) -> None:
        """MLflow's redirect to the path with its slashes merged, for the methods MLflow's
        paths take (others: 405 in MLflow's shape, as on the merged path)."""
        method: str = scope["method"]
        response = (
            merged_path_redirect(merged, scope.get("query_string", b""))
            if method in _FAST_METHODS
            else mlflow_error_response(MlflowMethodNotAllowed(method))
        )
        await response(scope, receive, send)

    async def _mlflow(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Every path of the MLflow zone: the gateway's own errors in MLflow's shape; an
        error that is no ``ProblemError`` is handled as on the other proxied paths."""
        app = scope["app"]
        prefix = mlflow_prefix(scope["path"])
        if prefix is not None:
            scope["route"] = _MLFLOW_ROUTES[prefix]
        request = Request(scope, receive)
        response: Any
        try:
            response = await mlflow_request(request, app.state.runtime.context)
        except ProblemError as exc:
            response = mlflow_error_response(exc)
        except Exception as exc:
            handler = _exception_handler(app.exception_handlers, exc)
            if handler is None:
                raise
            response = handler(request, exc)
            if inspect.isawaitable(response):
                response = await response
        await response(scope, receive, send)


def _exception_handler(
    handlers: Mapping[Any, Callable[..., Any]], exc: Exception
) -> Callable[..., Any] | None:
    """The handler the exception middleware would pick (by class, most specific first); None
    for those left to the server error middleware (``Exception`` itself)."""
    for cls in type(exc).__mro__:
        if cls is Exception:
            return None
        if cls in handlers:
            return handlers[cls]
    return None
