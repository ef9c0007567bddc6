"""Reverse proxy: route ``/api/v1/<area>/...`` to the owning service and relay the answer."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import AsyncIterator, Sequence

import aiohttp
from fastapi import Request, Response
from starlette.background import BackgroundTask
from starlette.requests import ClientDisconnect
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
#: The gateway's own endpoints (admin.py), never proxied.
ADMIN_PREFIX = "/api/v1/admin"

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
    "projects": "experiments",
    "alert-rules": "experiments",
    "alerts": "experiments",
    "models": "experiments",
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
    client = request.scope.get("client")
    peer: str = client[0] if client else ""
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


class SignedHeaders:
    """The signed identity and client-address headers of the current second, reused.

    A signature covers the secret, the unix second and the signed fields, nothing else, so every
    request of one caller within one second carries the same headers: computing them once per
    second and caller gives byte-identical results for less work. The entries are dropped when
    the second changes; at most ``max_entries`` callers are remembered within one second (the
    others are signed afresh)."""

    def __init__(self, *, max_entries: int = 4096) -> None:
        self._max = max_entries
        self._second = -1
        self._identity: dict[tuple[str, Principal], list[tuple[str, str]]] = {}
        self._client: dict[tuple[str, str], list[tuple[str, str]]] = {}

    def _tick(self) -> int:
        second = int(time.time())
        if second != self._second:
            self._second = second
            self._identity.clear()
            self._client.clear()
        return second

    def identity(self, secret: str, principal: Principal) -> list[tuple[str, str]]:
        second = self._tick()
        headers = self._identity.get((secret, principal))
        if headers is None:
            headers = signed_identity_headers(secret, principal, now=second)
            if len(self._identity) < self._max:
                self._identity[(secret, principal)] = headers
        return headers

    def client(self, secret: str, address: str) -> list[tuple[str, str]]:
        second = self._tick()
        headers = self._client.get((secret, address))
        if headers is None:
            headers = signed_client_headers(secret, address, now=second)
            if len(self._client) < self._max:
                self._client[(secret, address)] = headers
        return headers


_UNCACHED = SignedHeaders(max_entries=0)


def upstream_request_headers(
    request: Request,
    principal: Principal | None,
    *,
    identity_secret: str,
    forwarded_for: str = "",
    content_length: int | None = None,
    signed: SignedHeaders = _UNCACHED,
) -> list[tuple[str, str]]:
    raw = request.scope["headers"]
    connection = [v.decode("latin-1") for k, v in raw if k == b"connection"]
    drop = _DROP_UPSTREAM | _connection_tokens(connection) if connection else _DROP_UPSTREAM
    headers: list[tuple[str, str]] = []
    host = ""
    for k, v in raw:
        key = k.decode("latin-1")
        if key == "host" and not host:
            host = v.decode("latin-1")
        if key not in drop and not key.startswith(_IDENTITY_PREFIX):
            headers.append((key, v.decode("latin-1")))
    if not forwarded_for and (client := request.scope.get("client")):
        forwarded_for = client[0]
    request_id = request.scope.get("state", {}).get("request_id")
    if request_id:
        headers.append((REQUEST_ID_HEADER, request_id))
    if forwarded_for:
        headers.append(("X-Forwarded-For", forwarded_for))
        headers += signed.client(identity_secret, forwarded_for)
    headers.append(("X-Forwarded-Proto", request.scope.get("scheme", "http")))
    if host:
        headers.append(("X-Forwarded-Host", host))
    if content_length is not None:
        headers.append(("Content-Length", str(content_length)))
    if principal is not None:
        headers += signed.identity(identity_secret, principal)
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
    ``limit``. 413 at once when ``Content-Length`` announces more than ``limit``.

    Reads the ASGI messages itself (``Request.stream`` would wrap each one in an async
    generator step): a body that came in one message, the usual case, is returned as it is."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit)
    receive = request.receive
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        if message["type"] != "http.request":
            continue
        chunk: bytes = message.get("body", b"")
        more: bool = message.get("more_body", False)
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        if not more and not chunks and size <= buffer_up_to:
            return chunk
        if chunk:
            chunks.append(chunk)
        if size > buffer_up_to:
            return _rest(chunks, receive if more else None, size, limit)
        if not more:
            return b"".join(chunks)


async def _rest(
    head: list[bytes], receive: Receive | None, size: int, limit: int
) -> AsyncIterator[bytes]:
    """``head``, then the rest of the body from ``receive`` (None: there is no more)."""
    for chunk in head:
        yield chunk
    while receive is not None:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        if message["type"] != "http.request":
            continue
        piece: bytes = message.get("body", b"")
        size += len(piece)
        if size > limit:
            raise BodyTooLargeError
        if piece:
            yield piece
        if not message.get("more_body", False):
            return


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
    client: str | None = None,
    signed: SignedHeaders = _UNCACHED,
) -> Response:
    """Send the request to ``base_url`` and relay the answer; ``client``: the caller's address
    when already resolved (``forwarded_for``), ``signed``: where signed headers are reused."""
    method = request.scope["method"]
    streamed = not isinstance(body, bytes)
    declared = request.headers.get("content-length") if streamed else None
    content_length = int(declared) if declared and declared.isdigit() else None
    headers = upstream_request_headers(
        request,
        principal,
        identity_secret=identity_secret,
        forwarded_for=forwarded_for(request, trusted) if client is None else client,
        content_length=content_length,
        signed=signed,
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
        return RelayedResponse(
            content,
            status,
            downstream_headers(
                upstream.raw_headers, method=method, status=status, body_length=len(content)
            ),
        )
    return StreamedUpstreamResponse(upstream, service=service)


class RelayedResponse(Response):
    """A small upstream answer read whole: its status, headers and body as they are (no media
    type or charset guessed, no headers rendered twice)."""

    def __init__(
        self, content: bytes, status_code: int, raw_headers: list[tuple[bytes, bytes]]
    ) -> None:
        self.body = content
        self.status_code = status_code
        self.raw_headers = raw_headers
        self.background: BackgroundTask | None = None


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
