"""The web console: server-rendered pages over the public API, live updates from Kafka."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from functools import partial

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from runyard.console import live
from runyard.console.config import Settings
from runyard.console.gateway import ApiProblem, Gateway, SessionExpired
from runyard.console.pages import (
    account,
    admin,
    alerts,
    artifacts,
    auth,
    campaigns,
    datasets,
    experiment,
    experiments,
    models,
    notifications,
    projects,
    security,
    webhooks,
)
from runyard.console.render import STATIC_DIR, make_templates, page
from runyard.console.session import Sessions
from runyard.console.web import (
    ConsoleHeadersMiddleware,
    ConsoleState,
    CsrfRefused,
    LoginRequired,
    console_state,
    expired,
    wants_json,
)
from runyard.shared.heap import freeze_startup_heap, thaw_heap
from runyard.shared.http import (
    RequestIdMiddleware,
    install_ops_routes,
    install_problem_handlers,
    problem_response,
)
from runyard.shared.logging import configure_logging, get_logger
from runyard.shared.routing import index_routers
from runyard.shared.runtime import supervise

log = get_logger(__name__)


def error_page(request: Request, status: int, title: str, detail: str = "") -> Response:
    if wants_json(request):
        return problem_response(request, status=status, title=title, detail=detail or None)
    state = console_state(request)
    context = {"status": status, "title": title, "detail": detail}
    return page(request, state.templates, "error.html", context, status_code=status)


async def on_api_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiProblem)
    if exc.status == 404:
        return error_page(request, 404, "Not found", "There is nothing of yours here.")
    if exc.status >= 500:
        log.warning("console.api.failed", status=exc.status, title=exc.problem.get("title"))
        return error_page(request, 502, "Runyard is not answering", "Try again in a moment.")
    title = str(exc.problem.get("title") or "Refused")
    return error_page(request, exc.status, title, str(exc.problem.get("detail") or ""))


async def on_unreachable(request: Request, exc: Exception) -> Response:
    log.warning("console.api.unreachable", path=request.url.path, error=type(exc).__name__)
    return error_page(request, 502, "Runyard is not answering", "Try again in a moment.")


async def on_csrf(request: Request, exc: Exception) -> Response:
    log.warning("console.csrf.refused", path=request.url.path)
    return error_page(request, 403, "Form expired", "Reload the page and send the form again.")


async def on_http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        return error_page(request, 404, "Not found", "No page here.")
    if exc.status_code == 405:
        return error_page(request, 405, "Method not allowed")
    return error_page(request, exc.status_code, "Error", str(exc.detail or ""))


async def on_expired(request: Request, exc: Exception) -> Response:
    return expired(request, exc)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    sessions = Sessions(
        settings.session_secret.get_secret_value(), max_age_s=settings.session_max_age_s
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(
            service="console",
            level=settings.log_level,
            json=settings.log_json,
            instance=settings.instance,
        )
        gateway = Gateway(settings.api_url, timeout_s=settings.api_timeout_s)
        state = ConsoleState(settings, sessions, gateway, make_templates())
        tasks: list[asyncio.Task[None]] = []
        if settings.live_enabled:
            hub = live.Hub(settings.sse_queue_size)
            state.hub = hub
            tasks.append(
                asyncio.create_task(supervise("live", partial(live.consume, settings, hub)))
            )
        app.state.console = state
        freeze_startup_heap()
        log.info("service.started", live=settings.live_enabled)
        try:
            yield
        finally:
            thaw_heap()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await gateway.close()
            log.info("service.stopped")

    app = FastAPI(
        title="Runyard console",
        lifespan=lifespan,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    install_problem_handlers(app)
    app.add_exception_handler(ApiProblem, on_api_problem)
    app.add_exception_handler(CsrfRefused, on_csrf)
    app.add_exception_handler(httpx.TransportError, on_unreachable)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(LoginRequired, on_expired)
    app.add_exception_handler(SessionExpired, on_expired)

    async def check_api() -> None:
        state: ConsoleState = app.state.console
        response = await state.gateway.http.get("/health", timeout=3.0)
        response.raise_for_status()

    async def check_live() -> None:
        state: ConsoleState = app.state.console
        if state.hub is not None and not state.hub.consuming:
            raise ConnectionError("not reading the event topics yet")

    install_ops_routes(app, {"api": check_api, "live": check_live})

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:
        return Response(status_code=204)

    routers = (
        auth.router,
        security.router,
        account.router,
        experiments.router,
        experiment.router,
        notifications.router,
        webhooks.router,
        admin.router,
        live.router,
    )
    for router in routers:
        app.include_router(router)
    for router in (projects.router, artifacts.router, campaigns.router, datasets.router):
        app.include_router(router)
    app.include_router(models.router)
    app.include_router(alerts.router)
    index_routers(app)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_middleware(ConsoleHeadersMiddleware, sessions=sessions, settings=settings)
    app.add_middleware(RequestIdMiddleware, service="console")
    return app
