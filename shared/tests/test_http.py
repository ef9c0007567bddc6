from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from pydantic import BaseModel

from runyard.shared.http import (
    ProblemError,
    RequestIdMiddleware,
    install_ops_routes,
    install_problem_handlers,
)
from runyard.shared.testing import running_app


class Thing(BaseModel):
    name: str


def build_app(ready: dict[str, bool]) -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)
    app.add_middleware(RequestIdMiddleware, service="demo")

    async def database() -> None:
        if not ready["db"]:
            raise ConnectionError("database unreachable")

    install_ops_routes(app, {"postgres": database})

    @app.post("/things")
    async def create(thing: Thing) -> dict[str, Any]:
        if thing.name == "taken":
            raise ProblemError(409, "Conflict", "That name is taken.", current_status="exists")
        return {"name": thing.name}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals")

    return app


@pytest.fixture
async def client() -> Any:
    state = {"db": True}
    async with running_app(build_app(state), raise_app_exceptions=False) as c:
        c.state = state
        yield c


async def test_domain_error_is_problem_json_with_extra_members(client: Any) -> None:
    response = await client.post("/things", json={"name": "taken"})
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json() == {
        "type": "about:blank",
        "title": "Conflict",
        "status": 409,
        "detail": "That name is taken.",
        "instance": "/things",
        "current_status": "exists",
    }


async def test_validation_error_is_422_problem_with_errors(client: Any) -> None:
    response = await client.post("/things", json={"nom": 1})
    body = response.json()
    assert response.status_code == 422
    assert body["errors"][0]["loc"] == ["body", "name"]


async def test_unknown_route_and_crash_are_problems_without_internals(client: Any) -> None:
    missing = await client.get("/nope")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    crash = await client.get("/boom")
    assert crash.status_code == 500
    assert "secret internals" not in crash.text


async def test_request_id_is_echoed_or_generated(client: Any) -> None:
    echoed = await client.post("/things", json={"name": "a"}, headers={"X-Request-ID": "abc-123"})
    generated = await client.post("/things", json={"name": "b"})
    assert echoed.headers["x-request-id"] == "abc-123"
    assert len(generated.headers["x-request-id"]) == 36


async def test_ready_reports_each_check_and_fails_with_503(client: Any) -> None:
    assert (await client.get("/health")).json() == {"status": "ok"}
    assert (await client.get("/ready")).status_code == 200
    client.state["db"] = False
    not_ready = await client.get("/ready")
    assert not_ready.status_code == 503
    assert not_ready.json()["checks"] == {"postgres": "error"}


async def test_ready_never_shows_the_exception_of_a_failed_check(client: Any) -> None:
    client.state["db"] = False
    not_ready = await client.get("/ready")
    assert not_ready.status_code == 503
    assert "ConnectionError" not in not_ready.text
    assert "database unreachable" not in not_ready.text


async def test_metrics_are_prometheus_text_with_request_latency(client: Any) -> None:
    await client.post("/things", json={"name": "a"})
    metrics = await client.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    assert 'runyard_http_request_duration_seconds_count{method="POST",route="/things"' in (
        metrics.text
    )
