"""Reverse proxy: route ``/api/v1/<area>/...`` to the owning service and relay the answer."""

from __future__ import annotations

import aiohttp
from fastapi import Request, Response
from yarl import URL

from runyard.shared.http import REQUEST_ID_HEADER, ProblemError
from runyard.shared.identity import Principal, signed_identity_headers
from runyard.shared.logging import get_logger

log = get_logger(__name__)

API_PREFIX = "/api/v1/"

#: First path segment after ``/api/v1/`` -> the service that owns it.
AREAS: dict[str, str] = {
    "auth": "auth",
    "experiments": "experiments",
    "datasets": "experiments",
    "tags": "experiments",
    "saved-searches": "experiments",
    "hpo-campaigns": "experiments",
    "nas-campaigns": "experiments",
    "dataset-generations": "experiments",
    "dataset-imports": "experiments",
    "notifications": "notifications",
    "webhooks": "webhooks",
}

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)

#: Never passed upstream: credentials (identity travels as X-Runyard-* headers instead) and
#: headers the gateway sets itself.
_DROP_UPSTREAM = HOP_BY_HOP | {
    "host",
    "content-length",
    "authorization",
    "cookie",
    "x-api-key",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-request-id",
}
#: Never relayed back: the gateway's own server recomputes or sets these.
_DROP_DOWNSTREAM = HOP_BY_HOP | {"content-length", "date", "server", "x-request-id"}
_IDENTITY_PREFIX = "x-runyard-"


def service_for(path: str) -> str:
    """The owning service of ``<area>/...`` (the part after ``/api/v1/``), else 404/400."""
    segments = path.split("/")
    if any(s in (".", "..") for s in segments):
        raise ProblemError(400, "Bad Request", "The path must not contain '.' or '..' segments.")
    service = AREAS.get(segments[0])
    if service is None:
        raise ProblemError(404, "Not Found", f"No API area '{segments[0]}'.")
    return service


def _connection_tokens(values: list[str]) -> set[str]:
    return {t.strip().lower() for v in values for t in v.split(",") if t.strip()}


def upstream_request_headers(
    request: Request, principal: Principal | None, *, identity_secret: str
) -> list[tuple[str, str]]:
    drop = _DROP_UPSTREAM | _connection_tokens(request.headers.getlist("connection"))
    headers = [
        (k, v)
        for k, v in request.headers.items()
        if k not in drop and not k.startswith(_IDENTITY_PREFIX)
    ]
    client_ip = request.client.host if request.client else ""
    request_id = getattr(request.state, "request_id", None)
    if request_id:
        headers.append((REQUEST_ID_HEADER, request_id))
    if client_ip:
        headers.append(("X-Forwarded-For", client_ip))
    headers.append(("X-Forwarded-Proto", request.url.scheme))
    if host := request.headers.get("host"):
        headers.append(("X-Forwarded-Host", host))
    if principal is not None:
        headers += signed_identity_headers(identity_secret, principal)
    return headers


def downstream_headers(
    raw: tuple[tuple[bytes, bytes], ...], *, method: str, status: int, body_length: int
) -> list[tuple[bytes, bytes]]:
    connection = [v.decode("latin-1") for k, v in raw if k.lower() == b"connection"]
    drop = _DROP_DOWNSTREAM | _connection_tokens(connection)
    headers = [(k.lower(), v) for k, v in raw if k.decode("latin-1").lower() not in drop]
    if method == "HEAD":
        headers += [(k.lower(), v) for k, v in raw if k.lower() == b"content-length"][:1]
    elif status >= 200 and status not in (204, 304):
        headers.append((b"content-length", str(body_length).encode()))
    return headers


async def read_body(request: Request, limit: int) -> bytes:
    """The whole request body, or 413 problem+json once it passes ``limit`` bytes."""
    too_large = ProblemError(
        413, "Content Too Large", f"The request body must not exceed {limit} bytes.", limit=limit
    )
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def upstream_url(base_url: str, request: Request) -> URL:
    """Same path (as the client encoded it) and query string, on the upstream's base URL."""
    raw_path: bytes = request.scope.get("raw_path") or request.url.path.encode()
    url = base_url + raw_path.decode("latin-1")
    if query := request.scope.get("query_string", b""):
        url += "?" + query.decode("latin-1")
    return URL(url, encoded=True)


async def forward(
    http: aiohttp.ClientSession,
    request: Request,
    *,
    service: str,
    base_url: str,
    body: bytes,
    principal: Principal | None,
    identity_secret: str,
) -> Response:
    method = request.method
    try:
        async with http.request(
            method,
            upstream_url(base_url, request),
            headers=upstream_request_headers(request, principal, identity_secret=identity_secret),
            data=body or None,
            allow_redirects=False,
        ) as upstream:
            content = await upstream.read()
            status = upstream.status
            raw_headers = upstream.raw_headers
    except TimeoutError as exc:
        log.warning("gateway.upstream.timeout", service=service, method=method)
        raise ProblemError(
            504, "Gateway Timeout", f"The {service} service did not answer in time."
        ) from exc
    except aiohttp.ClientError as exc:
        log.warning("gateway.upstream.unreachable", service=service, error=repr(exc))
        raise ProblemError(502, "Bad Gateway", f"The {service} service is unreachable.") from exc
    response = Response(content=content, status_code=status)
    response.raw_headers = downstream_headers(
        raw_headers, method=method, status=status, body_length=len(content)
    )
    return response
