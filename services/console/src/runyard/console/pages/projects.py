"""Projects: the list (active, deleted or all), one project's experiments and its best runs,
creating, deleting (soft) and restoring one. Also the form helper the other data pages share:
the API's 422 errors put next to the field they are about."""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse, Response

from runyard.console.gateway import ApiProblem
from runyard.console.pages.experiments import dataset_names, unread_count
from runyard.console.render import page
from runyard.console.web import CsrfDep, StateDep, UserApiDep

router = APIRouter()

PAGE_SIZE = 50
#: experiments of a project read to rank its best runs (the API's largest page)
BEST_SCAN = 500
BEST_PER_METRIC = 5
STAGES = ("active", "deleted", "all")


def field_errors(problem: dict[str, Any]) -> dict[str, list[str]]:
    """The 422 ``errors`` of a problem by field, ``budget.max_trials`` style (the ``body``
    prefix and the tags pydantic adds for a tagged union left out); a problem that names one
    ``field`` (a 409 name clash) under that field; anything else under ``""``."""
    found: dict[str, list[str]] = {}
    for error in problem.get("errors") or []:
        if not isinstance(error, dict):
            continue
        loc = [str(p) for p in error.get("loc") or []]
        if loc and loc[0] in ("body", "query", "path"):
            loc = loc[1:]
        loc = [p for p in loc if p not in ("int", "float", "categorical", "function-after")]
        message = str(error.get("msg") or "invalid").removeprefix("Value error, ")
        found.setdefault(".".join(loc), []).append(message)
    if not found:
        key = str(problem.get("field") or "")
        found[key] = [str(problem.get("detail") or problem.get("title") or "Refused")]
    return found


def best_runs(experiments: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per metric the experiments are judged by (their ``best_metric``), the best few of its
    runs, best first (``best_mode`` says whether higher is better)."""
    by_metric: dict[str, list[dict[str, Any]]] = {}
    for e in experiments:
        if e.get("best_metric") and isinstance(e.get("best_value"), int | float):
            by_metric.setdefault(str(e["best_metric"]), []).append(e)
    ranked = []
    for metric, runs in sorted(by_metric.items()):
        lower_is_better = (runs[0].get("best_mode") or "max") == "min"
        runs.sort(key=lambda e: float(e["best_value"]), reverse=not lower_is_better)
        ranked.append(
            {
                "metric": metric,
                "mode": "min" if lower_is_better else "max",
                "runs": runs[:BEST_PER_METRIC],
            }
        )
    return ranked


@router.get("/projects")
async def projects(
    request: Request,
    state: StateDep,
    api: UserApiDep,
    stage: Annotated[str, Query(max_length=10)] = "active",
    cursor: Annotated[str, Query(max_length=2000)] = "",
) -> Response:
    stage = stage if stage in STAGES else "active"
    found, unread = await asyncio.gather(
        api.get("/projects", lifecycle_stage=stage, limit=PAGE_SIZE, cursor=cursor),
        unread_count(api),
    )
    next_cursor = found.get("next_cursor")
    return page(
        request,
        state.templates,
        "projects.html",
        {
            "projects": found["items"],
            "stage": stage,
            "stages": STAGES,
            "next_url": f"/projects?{urlencode({'stage': stage, 'cursor': next_cursor})}"
            if next_cursor
            else None,
            "errors": {},
            "form": {},
            "unread": unread,
        },
    )


@router.post("/projects", dependencies=[CsrfDep])
async def create_project(
    request: Request,
    state: StateDep,
    api: UserApiDep,
    name: Annotated[str, Form(max_length=1000)] = "",
    description: Annotated[str, Form(max_length=20_000)] = "",
) -> Response:
    body = {"name": name, "description": description or None}
    try:
        created = await api.json("POST", "/projects", json=body)
    except ApiProblem as exc:
        if exc.status not in (409, 422):
            raise
        found = await api.get("/projects", limit=PAGE_SIZE)
        return page(
            request,
            state.templates,
            "projects.html",
            {
                "projects": found["items"],
                "stage": "active",
                "stages": STAGES,
                "next_url": None,
                "errors": field_errors(exc.problem),
                "form": {"name": name, "description": description},
                "unread": await unread_count(api),
            },
            status_code=exc.status,
        )
    return RedirectResponse(f"/projects/{created['id']}", status_code=303)


@router.get("/projects/{project_id}")
async def project(
    request: Request,
    state: StateDep,
    api: UserApiDep,
    project_id: uuid.UUID,
    cursor: Annotated[str, Query(max_length=2000)] = "",
) -> Response:
    found, listed, scanned, unread = await asyncio.gather(
        api.get(f"/projects/{project_id}"),
        api.get("/experiments", project_id=project_id, limit=PAGE_SIZE, cursor=cursor),
        api.get("/experiments", project_id=project_id, limit=BEST_SCAN, order_by="-created_at"),
        unread_count(api),
    )
    rows = listed["items"]
    names = await dataset_names(api, {str(e["dataset_id"]) for e in rows if e.get("dataset_id")})
    next_cursor = listed.get("next_cursor")
    return page(
        request,
        state.templates,
        "project.html",
        {
            "p": found,
            "rows": [{**e, "dataset_name": names.get(str(e.get("dataset_id")), "")} for e in rows],
            "best": best_runs(scanned["items"]),
            "scanned_all": scanned.get("next_cursor") is None,
            "next_url": f"/projects/{project_id}?{urlencode({'cursor': next_cursor})}"
            if next_cursor
            else None,
            "first_url": f"/projects/{project_id}" if cursor else None,
            "unread": unread,
        },
    )


@router.post("/projects/{project_id}/{action}", dependencies=[CsrfDep])
async def project_lifecycle(api: UserApiDep, project_id: uuid.UUID, action: str) -> Response:
    """``delete`` (soft: the project can be restored, its experiments stay) and ``restore``."""
    if action == "delete":
        await api.json("DELETE", f"/projects/{project_id}")
    elif action == "restore":
        await api.json("POST", f"/projects/{project_id}/restore")
    else:
        raise ApiProblem(404, {"title": "Not Found", "status": 404})
    return RedirectResponse(f"/projects/{project_id}", status_code=303)
