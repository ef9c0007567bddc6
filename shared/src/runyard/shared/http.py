"""HTTP plumbing shared by every service: problem+json errors, request ids, ops endpoints."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, Histogram, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runyard.shared.db import database_error_code, database_unavailable
from runyard.shared.logging import get_logger

log = get_logger(__name__)

PROBLEM_JSON = "application/problem+json"
REQUEST_ID_HEADER = "X-Request-ID"

HTTP_LATENCY = Histogram(
    "runyard_http_request_duration_seconds",
    "HTTP request latency",
    ["service", "method", "route", "status"],
)


class ProblemError(Exception):
    """A domain error carrying its HTTP status; rendered as RFC 9457 problem+json."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str | None = None,
        *,
        type_: str = "about:blank",
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.title = title
        self.detail = detail
        self.type = type_
        self.errors = errors
        self.headers = headers or {}
        self.extra = extra


def problem_response(
    request: Request | None,
    *,
    status: int,
    title: str,
    detail: str | None = None,
    type_: str = "about:blank",
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {"type": type_, "title": title, "status": status}
    if detail:
        body["detail"] = detail
    if request is not None:
        body["instance"] = request.url.path
    if errors is not None:
        body["errors"] = errors
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
}


#: PostgreSQL refuses U+0000 in text (22021 character_not_in_repertoire: "invalid byte sequence
#: for encoding UTF8: 0x00") and in jsonb (22P05 untranslatable_character: "unsupported Unicode
#: escape sequence"). Such a request carried it in: it is the client's input, not a server fault.
NUL_CHARACTER_SQLSTATES = frozenset({"22021", "22P05"})


def install_problem_handlers(app: FastAPI) -> None:
    async def on_problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ProblemError)
        return problem_response(
            request,
            status=exc.status,
            title=exc.title,
            detail=exc.detail,
            type_=exc.type,
            errors=exc.errors,
            headers=exc.headers,
            **exc.extra,
        )

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        return problem_response(
            request,
            status=422,
            title="Validation failed",
            detail="The request did not match the expected shape.",
            errors=errors,
        )

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        return problem_response(
            request,
            status=exc.status_code,
            title=_TITLES.get(exc.status_code, "Error"),
            detail=str(exc.detail) if exc.detail else None,
            headers=dict(exc.headers or {}),
        )

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        if database_error_code(exc) in NUL_CHARACTER_SQLSTATES:
            log.info("http.nul_character.refused", path=request.url.path)
            return problem_response(
                request,
                status=422,
                title="Unsupported character",
                detail="Text may not contain the NUL character (U+0000).",
            )
        if database_unavailable(exc):
            log.warning("http.database_unavailable", path=request.url.path, error=repr(exc))
            return problem_response(
                request,
                status=503,
                title="Service Unavailable",
                detail="The service's database is unavailable; try again shortly.",
                headers={"Retry-After": "1"},
            )
        log.exception("http.unhandled", path=request.url.path)
        return problem_response(request, status=500, title="Internal Server Error")

    app.add_exception_handler(ProblemError, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)


class RequestIdMiddleware:
    """Takes ``X-Request-ID`` from the request (or makes one), binds it to logs, echoes it back."""

    def __init__(self, app: ASGIApp, *, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope) or str(uuid.uuid4())
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status_holder = {"status": 500}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                headers = [
                    (k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"
                ]
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                route = scope.get("route")
                HTTP_LATENCY.labels(
                    self.service,
                    scope.get("method", ""),
                    getattr(route, "path", "unmatched"),
                    str(status_holder["status"]),
                ).observe(time.perf_counter() - started)


def _incoming_request_id(scope: Scope) -> str | None:
    for key, value in scope.get("headers", []):
        if key == b"x-request-id":
            candidate: str = value.decode("latin-1").strip()
            if 0 < len(candidate) <= 128 and candidate.isprintable():
                return candidate
    return None


ReadinessCheck = Callable[[], Awaitable[None]]


def install_ops_routes(app: FastAPI, checks: dict[str, ReadinessCheck]) -> None:
    """``/health`` (process alive), ``/ready`` (every dependency answers), ``/metrics``.

    ``/ready`` names each check ``ok`` or ``error``, never the exception: its text can hold
    addresses, ports and driver messages (the gateway's answers reach the internet). What failed
    is logged (``ops.ready.check_failed``)."""

    @app.get("/health", tags=["operations"], include_in_schema=False)
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready", tags=["operations"], include_in_schema=False)
    async def ready(request: Request) -> Response:
        results: dict[str, str] = {}
        ok = True
        for name, check in checks.items():
            try:
                await check()
                results[name] = "ok"
            except Exception as exc:
                ok = False
                results[name] = "error"
                log.warning("ops.ready.check_failed", check=name, error=repr(exc)[:500])
        if ok:
            return JSONResponse({"status": "ready", "checks": results})
        return problem_response(
            request, status=503, title="Service Unavailable", detail="not ready", checks=results
        )

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
