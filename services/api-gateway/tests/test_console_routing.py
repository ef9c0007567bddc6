"""The gateway sends every path outside the API and its own to the web console: cookies kept,
API credentials and identity headers never passed, streams relayed as they come."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, StreamingResponse

from runyard.shared.testing.serving import serve as serve_app

PROBLEM_JSON = "application/problem+json"


@contextlib.asynccontextmanager
async def serve(app: Any) -> AsyncIterator[str]:
    """The app on uvicorn on a free loopback port."""
    async with serve_app(app) as url:
        yield url


def unused_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


@dataclass
class FakeConsole:
    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)


def console_app(console: FakeConsole) -> FastAPI:
    app = FastAPI()

    @app.get("/events")
    async def events() -> StreamingResponse:
        async def frames() -> AsyncIterator[bytes]:
            yield b"event: hello\ndata: {}\n\n"
            await console.release.wait()
            yield b"event: bye\ndata: {}\n\n"

        return StreamingResponse(frames(), media_type="text/event-stream")

    @app.api_route("/{path:path}", methods=["GET", "POST"])
    async def page(request: Request, path: str) -> HTMLResponse:
        console.requests.append(
            {
                "method": request.method,
                "path": request.url.path,
                "query": request.url.query,
                "headers": {k: v for k, v in request.headers.items()},
                "body": (await request.body()).decode(),
            }
        )
        response = HTMLResponse(f"<p>console {path}</p>")
        response.set_cookie("ry_session", "sealed", httponly=True, samesite="lax")
        return response

    return app


@contextlib.asynccontextmanager
async def running_console() -> AsyncIterator[FakeConsole]:
    console = FakeConsole()
    async with serve(console_app(console)) as url:
        console.url = url
        yield console


async def test_the_start_page_and_other_non_api_paths_reach_the_console_with_their_cookies(
    start_gateway, signing_key
) -> None:
    async with running_console() as console, start_gateway(console_url=console.url) as client:
        home = await client.get("/")
        page = await client.post(
            "/experiments/abc?sort=name",
            content=b"csrf_token=t&name=x",
            headers={
                "content-type": "application/x-www-form-urlencoded",
                "cookie": "ry_session=sealed-value",
                "authorization": f"Bearer {signing_key.token()}",
                "x-api-key": "ry_secret",
                "x-runyard-user-id": "00000000-0000-0000-0000-000000000001",
                "x-runyard-signature": "forged",
            },
        )

    assert home.status_code == 200 and "console " in home.text
    assert page.status_code == 200
    assert "ry_session=sealed" in page.headers["set-cookie"]
    seen = console.requests[-1]
    assert (seen["method"], seen["path"], seen["query"]) == (
        "POST",
        "/experiments/abc",
        "sort=name",
    )
    assert seen["body"] == "csrf_token=t&name=x"
    assert seen["headers"]["cookie"] == "ry_session=sealed-value"
    assert seen["headers"]["x-forwarded-host"] == client.base_url.netloc.decode()
    assert "x-request-id" in seen["headers"]
    leaked = {"authorization", "x-api-key", "x-runyard-user-id", "x-runyard-signature"}
    assert leaked & set(seen["headers"]) == set()


async def test_api_docs_health_and_metrics_paths_never_reach_the_console(start_gateway) -> None:
    async with running_console() as console, start_gateway(console_url=console.url) as client:
        unknown_api = await client.get("/api/nowhere")
        unknown_area = await client.get("/api/v1/nowhere")
        metrics = await client.get("/metrics")
        docs = await client.get("/docs")
        health = await client.get("/health")
        spec = await client.get("/openapi.json")

    assert unknown_api.status_code == 404 and unknown_api.headers["content-type"] == PROBLEM_JSON
    assert unknown_area.status_code == 404
    assert metrics.status_code == 404 and metrics.headers["content-type"] == PROBLEM_JSON
    assert (docs.status_code, health.status_code, spec.status_code) == (200, 200, 200)
    assert console.requests == []


async def test_an_event_stream_is_relayed_as_it_comes_not_when_it_ends(start_gateway) -> None:
    async with (
        running_console() as console,
        start_gateway(console_url=console.url) as client,
        client.stream("GET", "/events") as response,
    ):
        chunks = response.aiter_bytes()
        first = await asyncio.wait_for(chunks.__anext__(), timeout=10)
        console.release.set()
        rest = b"".join([chunk async for chunk in chunks])

    assert response.status_code == 200
    assert first.startswith(b"event: hello")
    assert b"event: bye" in rest


async def test_a_console_that_is_down_is_a_502_problem_not_a_hang(start_gateway) -> None:
    async with start_gateway(console_url=unused_url()) as client:
        response = await client.get("/experiments")

    assert response.status_code == 502
    assert response.headers["content-type"] == PROBLEM_JSON
    assert "console" in response.json()["detail"]


async def test_a_page_served_by_the_console_keeps_its_own_csp(start_gateway) -> None:
    """The gateway adds its security headers only where the console set none."""
    async with running_console() as console, start_gateway(console_url=console.url) as client:
        response = await client.get("/login")

    assert "default-src 'none'" not in response.headers.get("content-security-policy", "")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert isinstance(response, httpx.Response)
