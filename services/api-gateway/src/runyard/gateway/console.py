"""The web console behind the gateway: every path outside the API and the gateway's own
(``/api/``, ``/docs``, ``/openapi.json``, ``/health``, ``/ready``, ``/metrics`` ...) goes to the
console service, so users have one URL.

Unlike an API call, a console request keeps its cookies (the console's session lives in one)
and carries no identity: the console is a client of the API like any other, with the user's
own token. Credentials meant for the API (``Authorization``, ``X-API-Key``, ``X-Runyard-*``)
never reach it. An event stream (``/events``) may stay open: only connecting has a timeout.
"""

from __future__ import annotations

import aiohttp
from fastapi import APIRouter, Request, Response

from runyard.gateway.context import gateway_state
from runyard.gateway.errors import UpstreamTimeout, UpstreamUnreachable
from runyard.gateway.proxy import (
    HOP_BY_HOP,
    SMALL_RESPONSE,
    StreamedUpstreamResponse,
    downstream_headers,
    forwarded_for,
    request_body,
    upstream_url,
)
from runyard.shared.http import REQUEST_ID_HEADER, ProblemError
from runyard.shared.logging import get_logger

log = get_logger(__name__)

#: paths the gateway answers itself (or refuses): never the console's
NOT_CONSOLE = (
    "/api/",
    "/ajax-api/",  # MLflow's (mlflow.py)
    "/docs",
    "/openapi.json",
    "/health",
    "/ready",
    "/metrics",
    "/asyncapi.json",
)
METHODS = ["GET", "POST", "HEAD"]
_DROP = HOP_BY_HOP | {
    "host",
    "content-length",
    "authorization",
    "x-api-key",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-request-id",
}

router = APIRouter()


def is_console_path(path: str) -> bool:
    return not any(path == p.rstrip("/") or path.startswith(p) for p in NOT_CONSOLE)


def console_headers(request: Request, client: str, content_length: int) -> list[tuple[str, str]]:
    headers = [
        (k, v)
        for k, v in request.headers.items()
        if k not in _DROP and not k.startswith("x-runyard-")
    ]
    if request_id := getattr(request.state, "request_id", None):
        headers.append((REQUEST_ID_HEADER, request_id))
    if client:
        headers.append(("X-Forwarded-For", client))
    headers.append(("X-Forwarded-Proto", request.url.scheme))
    if host := request.headers.get("host"):
        headers.append(("X-Forwarded-Host", host))
    headers.append(("Content-Length", str(content_length)))
    return headers


@router.api_route("/{path:path}", methods=METHODS, include_in_schema=False)
async def console(request: Request, path: str) -> Response:
    if not is_console_path(request.url.path):
        raise ProblemError(404, "Not Found", "No such endpoint.")
    state = gateway_state(request)
    settings = state.settings
    body = await request_body(request, limit=settings.max_body_bytes, buffer_up_to=1024 * 1024)
    if not isinstance(body, bytes):  # forms are small: a console request is never streamed up
        raise ProblemError(413, "Content Too Large", "The form is too large.")
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=settings.upstream_connect_timeout_s)
    try:
        upstream = await state.http.request(
            request.method,
            upstream_url(settings.console_url.rstrip("/"), request),
            headers=console_headers(request, forwarded_for(request, state.trusted), len(body)),
            data=body or None,
            allow_redirects=False,
            timeout=timeout,
        )
        length = upstream.content_length
        small = request.method == "HEAD" or (length is not None and length <= SMALL_RESPONSE)
        content = await upstream.read() if small else None
    except TimeoutError as exc:
        raise UpstreamTimeout("console") from exc
    except aiohttp.ClientError as exc:
        log.warning("gateway.console.unreachable", error=repr(exc))
        raise UpstreamUnreachable("console") from exc
    if content is None:
        return StreamedUpstreamResponse(upstream, service="console")
    response = Response(content=content, status_code=upstream.status)
    status = upstream.status
    response.raw_headers = downstream_headers(
        upstream.raw_headers, method=request.method, status=status, body_length=len(content)
    )
    return response
