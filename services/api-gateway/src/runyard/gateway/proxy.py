"""Reverse proxy: route ``/api/v1/<area>/...`` to the owning service and relay the answer."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator, Sequence

import aiohttp
from fastapi import Request, Response
from starlette.types import Receive, Scope, Send
from yarl import URL

from runyard.gateway.breaker import CircuitBreaker
from runyard.gateway.errors import (
    BodyTooLarge,
    DotSegments,
    UnknownArea,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from runyard.shared.http import REQUEST_ID_HEADER
from runyard.shared.identity import Principal, signed_client_headers, signed_identity_headers
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
        raise DotSegments()
    service = AREAS.get(segments[0])
    if service is None:
        raise UnknownArea(segments[0])
    return service


def _connection_tokens(values: list[str]) -> set[str]:
    return {t.strip().lower() for v in values for t in v.split(",") if t.strip()}


def client_ip(request: Request, trusted: Sequence[IPNetwork]) -> str:
    """The caller's address: the TCP peer, or, when the peer is a trusted proxy, the right-most
    ``X-Forwarded-For`` entry that is not one (entries further left are client-supplied)."""
    peer = request.client.host if request.client else ""
    if not trusted or not _is_trusted(peer, trusted):
        return peer
    chain = [
        hop.strip()
        for value in request.headers.getlist("x-forwarded-for")
        for hop in value.split(",")
        if hop.strip()
    ]
    for hop in reversed(chain):
        if not _is_trusted(hop, trusted):
            return hop
    return chain[0] if chain else peer


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(value: str) -> list[IPNetwork]:
    return [ipaddress.ip_network(v.strip(), strict=False) for v in value.split(",") if v.strip()]


def _is_trusted(address: str, trusted: Sequence[IPNetwork]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


def upstream_request_headers(
    request: Request,
    principal: Principal | None,
    *,
    identity_secret: str,
    forwarded_for: str = "",
    content_length: int | None = None,
) -> list[tuple[str, str]]:
    drop = _DROP_UPSTREAM | _connection_tokens(request.headers.getlist("connection"))
    headers = [
        (k, v)
        for k, v in request.headers.items()
        if k not in drop and not k.startswith(_IDENTITY_PREFIX)
    ]
    if not forwarded_for and request.client:
        forwarded_for = request.client.host
    request_id = getattr(request.state, "request_id", None)
    if request_id:
        headers.append((REQUEST_ID_HEADER, request_id))
    if forwarded_for:
        headers.append(("X-Forwarded-For", forwarded_for))
        headers += signed_client_headers(identity_secret, forwarded_for)
    headers.append(("X-Forwarded-Proto", request.url.scheme))
    if host := request.headers.get("host"):
        headers.append(("X-Forwarded-Host", host))
    if content_length is not None:
        headers.append(("Content-Length", str(content_length)))
    if principal is not None:
        headers += signed_identity_headers(identity_secret, principal)
    return headers


def forwarded_for(request: Request, trusted: Sequence[IPNetwork]) -> str:
    """``X-Forwarded-For`` for the upstream: the one client address the gateway resolved.

    Not the chain: entries left of the right-most untrusted hop are whatever the client wrote.
    The services take the client from the signed ``X-Runyard-Client-Address`` (same value)."""
    return client_ip(request, trusted)


def downstream_headers(
    raw: tuple[tuple[bytes, bytes], ...], *, method: str, status: int, body_length: int | None
) -> list[tuple[bytes, bytes]]:
    """The upstream's headers minus hop-by-hop ones; ``content-length`` is the relayed body's
    (``None``: unknown, the response is streamed chunked)."""
    connection = [v.decode("latin-1") for k, v in raw if k.lower() == b"connection"]
    drop = _DROP_DOWNSTREAM | _connection_tokens(connection)
    headers = [(k.lower(), v) for k, v in raw if k.decode("latin-1").lower() not in drop]
    if method == "HEAD":
        headers += [(k.lower(), v) for k, v in raw if k.lower() == b"content-length"][:1]
    elif status >= 200 and status not in (204, 304) and body_length is not None:
        headers.append((b"content-length", str(body_length).encode()))
    return headers


class BodyTooLargeError(Exception):
    pass


async def request_body(
    request: Request, *, limit: int, buffer_up_to: int
) -> bytes | AsyncIterator[bytes]:
    """The body as bytes when it ends within ``buffer_up_to`` bytes; otherwise an iterator that
    streams it (what was read first, then the rest) and raises ``BodyTooLargeError`` past
    ``limit``. 413 at once when ``Content-Length`` announces more than ``limit``."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit)
    stream = request.stream()
    chunks: list[bytes] = []
    size = 0
    async for chunk in stream:
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
        if size > buffer_up_to:
            return _rest(chunks, stream, size, limit)
    return b"".join(chunks)


async def _rest(
    head: list[bytes], stream: AsyncIterator[bytes], size: int, limit: int
) -> AsyncIterator[bytes]:
    for chunk in head:
        yield chunk
    async for chunk in stream:
        size += len(chunk)
        if size > limit:
            raise BodyTooLargeError
        yield chunk


def upstream_url(base_url: str, request: Request) -> URL:
    """Same path (as the client encoded it) and query string, on the upstream's base URL."""
    raw_path: bytes = request.scope.get("raw_path") or request.url.path.encode()
    url = base_url + raw_path.decode("latin-1")
    if query := request.scope.get("query_string", b""):
        url += "?" + query.decode("latin-1")
    return URL(url, encoded=True)


#: Responses up to this size (by ``Content-Length``) are read whole and sent in one piece.
SMALL_RESPONSE = 64 * 1024
CHUNK = 64 * 1024


async def forward(
    http: aiohttp.ClientSession,
    request: Request,
    *,
    service: str,
    base_url: str,
    body: bytes | AsyncIterator[bytes],
    principal: Principal | None,
    identity_secret: str,
    upstream_timeout: aiohttp.ClientTimeout | None = None,
    breaker: CircuitBreaker | None = None,
    trusted: Sequence[IPNetwork] = (),
    limit: int = 0,
) -> Response:
    method = request.method
    streamed = not isinstance(body, bytes)
    declared = request.headers.get("content-length")
    content_length = int(declared) if streamed and declared and declared.isdigit() else None
    headers = upstream_request_headers(
        request,
        principal,
        identity_secret=identity_secret,
        forwarded_for=forwarded_for(request, trusted),
        content_length=content_length,
    )
    if breaker is not None:
        breaker.before_call()
    try:
        upstream = await http.request(
            method,
            upstream_url(base_url, request),
            headers=headers,
            data=body or None,
            allow_redirects=False,
            timeout=upstream_timeout or http.timeout,
        )
        length = upstream.content_length
        small = method == "HEAD" or (length is not None and length <= SMALL_RESPONSE)
        content = await upstream.read() if small else None
    except TimeoutError as exc:
        if breaker is not None:
            breaker.record_failure()
        log.warning("gateway.upstream.timeout", service=service, method=method)
        raise UpstreamTimeout(service) from exc
    except aiohttp.ClientError as exc:
        if isinstance(exc.__cause__, BodyTooLargeError) or _caused_by_size(exc):
            if breaker is not None:
                breaker.release()
            raise BodyTooLarge(limit) from exc
        if breaker is not None:
            breaker.record_failure()
        log.warning("gateway.upstream.unreachable", service=service, error=repr(exc))
        raise UpstreamUnreachable(service) from exc
    except BaseException:
        # cancelled (client gone) or anything unforeseen: says nothing about the service, but a
        # half-open circuit must not wait forever for this trial's verdict
        if breaker is not None:
            breaker.release()
        raise
    if breaker is not None:
        breaker.record_success()
    status = upstream.status
    if content is not None:
        response = Response(content=content, status_code=status)
        response.raw_headers = downstream_headers(
            upstream.raw_headers, method=method, status=status, body_length=len(content)
        )
        return response
    return StreamedUpstreamResponse(upstream, service=service)


def _caused_by_size(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, BodyTooLargeError) or "BodyTooLargeError" in str(seen):
            return True
        seen = seen.__cause__
    return False


class StreamedUpstreamResponse(Response):
    """Relays a large or unsized upstream body chunk by chunk (never held whole in memory)."""

    def __init__(self, upstream: aiohttp.ClientResponse, *, service: str) -> None:
        self.upstream = upstream
        self.service = service
        self.status_code = upstream.status
        self.background = None
        self.raw_headers = downstream_headers(
            upstream.raw_headers,
            method=upstream.method,
            status=upstream.status,
            body_length=upstream.content_length,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": self.status_code,
                    "headers": self.raw_headers,
                }
            )
            try:
                async for chunk in self.upstream.content.iter_chunked(CHUNK):
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            except (aiohttp.ClientError, TimeoutError) as exc:
                # the status line is gone already: end the response early, the client sees a
                # short body (Content-Length) or a broken chunked stream
                log.warning("gateway.upstream.body_failed", service=self.service, error=repr(exc))
                raise
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            self.upstream.release()
