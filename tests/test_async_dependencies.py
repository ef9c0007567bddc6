"""Every dependency of every route of every app is ``async def``: FastAPI runs a plain ``def``
dependency in its thread pool, a thread hand-off on each request (measured at ~14 % of a short
request's CPU in the experiments service before they were made async)."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

APPS = ["auth", "experiments", "notifications", "webhooks", "gateway", "console"]


def app_of(service: str) -> Any:
    main = importlib.import_module(f"runyard.{service}.main")
    config = importlib.import_module(f"runyard.{service}.config")
    return main.create_app(config.Settings(environment="test"))


def dependants(app: Any) -> Iterator[Dependant]:
    """Each route's, also of routes in included routers (FastAPI keeps those as routers: their
    routes' dependants there include the router's own dependencies)."""
    for route in app.routes:
        if isinstance(route, APIRoute):
            yield route.dependant
        elif hasattr(route, "effective_route_contexts"):
            for context in route.effective_route_contexts():
                if getattr(context, "dependant", None) is not None:
                    yield context.dependant


def dependencies(dependant: Dependant) -> Iterator[Dependant]:
    for sub in dependant.dependencies:
        yield sub
        yield from dependencies(sub)


def runs_in_thread_pool(call: Any) -> bool:
    """What FastAPI hands to its thread pool: a plain function or sync generator (classes,
    such as pydantic query models, are built in place)."""
    if inspect.isclass(call):
        return False
    # an instance with __call__ (a configured dependency object) is judged by that method
    target = call if inspect.isroutine(call) else type(call).__call__
    return not (inspect.iscoroutinefunction(target) or inspect.isasyncgenfunction(target))


@pytest.mark.parametrize("service", APPS)
def test_no_route_of_the_app_has_a_dependency_run_in_the_thread_pool(service: str) -> None:
    app = app_of(service)
    found = [dep for dependant in dependants(app) for dep in dependencies(dependant)]
    assert found, "no dependency found: FastAPI's routes are kept differently"
    sync = {
        f"{dep.call.__module__}.{dep.call.__qualname__}"
        for dep in found
        if dep.call is not None and runs_in_thread_pool(dep.call)
    }
    assert not sync, f"make these dependencies async def: {sorted(sync)}"
