"""Every app's included routers refuse at once a path none of their routes can match
(``runyard.shared.routing``), and every route still answers the paths it did: for each route of
each app, a path built from its pattern is matched by the same route with the index as without
it, and the routers before it refuse that path without trying their routes."""

from __future__ import annotations

import re
from typing import Any

import pytest
from starlette.routing import Match

from tests.test_async_dependencies import APPS, app_of

SAMPLES = {"uuid": "0f0e8f8e-1d2c-4b3a-8a9b-0c1d2e3f4a5b", "int": "7", "path": "a/b.txt"}


def sample_path(path_format: str, converters: dict[str, Any]) -> str:
    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        kind = type(converters.get(name)).__name__.replace("Convertor", "").lower()
        return SAMPLES.get(kind, "x1")

    return re.sub(r"{(\w+)(?::\w+)?}", fill, path_format)


def first_match(app: Any, scope: dict[str, Any], *, indexed: bool) -> int | None:
    for index, route in enumerate(app.router.routes):
        matches = route.matches if indexed else type(route).matches.__get__(route)
        match, _ = matches(dict(scope))
        if match == Match.FULL:
            return index
    return None


def scopes(app: Any) -> list[dict[str, Any]]:
    found = []
    for route in app.router.routes:
        for context in getattr(route, "effective_route_contexts", list)():
            path = getattr(context.starlette_route, "path_format", None) or context.path_format
            converters = getattr(context.starlette_route, "param_convertors", None) or getattr(
                context, "param_convertors", {}
            )
            for method in sorted(context.methods or {"GET"}):
                found.append(
                    {
                        "type": "http",
                        "method": method,
                        "path": sample_path(path, converters),
                        "root_path": "",
                        "headers": [],
                        "query_string": b"",
                    }
                )
    return found


@pytest.mark.parametrize("service", APPS)
def test_every_route_is_matched_by_the_same_route_with_the_index(service: str) -> None:
    app = app_of(service)
    indexed = [r for r in app.router.routes if hasattr(r.matches, "literal_prefixes")]
    assert indexed, "no included router got an index"
    checked = scopes(app)
    assert checked
    for scope in checked:
        assert first_match(app, scope, indexed=True) == first_match(app, scope, indexed=False), (
            scope["method"],
            scope["path"],
        )


def test_the_experiments_service_refuses_foreign_routers_by_their_prefix() -> None:
    app = app_of("experiments")
    scope = {
        "type": "http",
        "method": "POST",
        "path": f"/api/v1/experiments/{SAMPLES['uuid']}/runs",
        "root_path": "",
    }
    target = first_match(app, scope, indexed=True)
    assert target is not None
    skipped = [
        route
        for route in app.router.routes[:target]
        if hasattr(route.matches, "literal_prefixes")
        and not any(scope["path"].startswith(p) for p in route.matches.literal_prefixes)
    ]
    assert len(skipped) >= 5  # the MLflow routers before it, refused by their prefixes
