from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiohttp
from fastapi import APIRouter, Request, Response
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

from runyard.gateway.auth import JwksCache, authenticate, is_public
from runyard.gateway.config import Settings
from runyard.gateway.credentials import CredentialChecker
from runyard.gateway.openapi import OpenApiAggregator
from runyard.gateway.proxy import forward, read_body, service_for
from runyard.shared.http import problem_response

PROXIED_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


@dataclass
class GatewayState:
    """Built in the app's startup hook (see main.py), kept in ``runtime.state["gateway"]``."""

    settings: Settings
    http: aiohttp.ClientSession
    jwks: JwksCache
    openapi: OpenApiAggregator
    credentials: CredentialChecker


def gateway_state(request: Request) -> GatewayState:
    state: GatewayState = request.app.state.runtime.state["gateway"]
    return state


router = APIRouter()


@router.get("/openapi.json", include_in_schema=False)
async def merged_openapi(request: Request) -> JSONResponse:
    return JSONResponse(await gateway_state(request).openapi.document())


@router.get("/docs", include_in_schema=False)
async def swagger_ui() -> HTMLResponse:
    return get_swagger_ui_html(openapi_url="/openapi.json", title="Runyard API")


@router.get("/ready/upstreams", include_in_schema=False)
async def upstreams_ready(request: Request) -> Response:
    """Whether every service behind the gateway answers its ``/health``."""
    state = gateway_state(request)
    timeout = aiohttp.ClientTimeout(total=state.settings.openapi_fetch_timeout_s)

    async def check(base_url: str) -> str:
        try:
            async with state.http.get(f"{base_url}/health", timeout=timeout) as resp:
                return "ok" if resp.status == 200 else f"error: HTTP {resp.status}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            return f"error: {type(exc).__name__}"

    upstreams = state.settings.upstreams()
    results = dict(
        zip(upstreams, await asyncio.gather(*map(check, upstreams.values())), strict=True)
    )
    if all(r == "ok" for r in results.values()):
        return JSONResponse({"status": "ready", "upstreams": results})
    return problem_response(
        request,
        status=503,
        title="Service Unavailable",
        detail="an upstream service is not healthy",
        upstreams=results,
    )


@router.api_route("/api/v1/{path:path}", methods=PROXIED_METHODS, include_in_schema=False)
async def proxy(request: Request, path: str) -> Response:
    state = gateway_state(request)
    service = service_for(path)
    principal = None
    if not is_public(request.method, request.url.path):
        principal = await authenticate(
            request, state.jwks, state.settings, state.credentials, service=service
        )
    body = await read_body(request, state.settings.max_body_bytes)
    return await forward(
        state.http,
        request,
        service=service,
        base_url=state.settings.upstreams()[service],
        body=body,
        principal=principal,
        identity_secret=state.settings.identity_secret.get_secret_value(),
    )
