"""One experiment (status, lifecycle, parameters, notes, charts), the compare page, and the JSON
reads their scripts make (the downsampled history, the unread count)."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from runyard.console.gateway import ApiProblem, problem_of
from runyard.console.pages.alerts import experiment_alerts
from runyard.console.pages.experiments import unread_count
from runyard.console.render import page
from runyard.console.web import CsrfDep, StateDep, UserApiDep

router = APIRouter()

ACTIONS = {
    "pending": ["start", "complete", "fail", "cancel"],
    "running": ["pause", "complete", "fail", "cancel"],
    "paused": ["resume", "complete", "fail", "cancel"],
}
LIFECYCLE = frozenset({"start", "pause", "resume", "complete", "fail", "cancel"})
MAX_COMPARED = 10
#: buckets of a chart's history, drawn as a line and a min-max band: one experiment's charts
#: take 1,000 (zooming reads finer ones); the compare page's 10 lines a chart about one per
#: pixel of a chart's width at 1280 px (two charts a row), 600
EXPERIMENT_BUCKETS = 1000
COMPARE_BUCKETS = 600
MetricParam = Annotated[list[str] | None, Query(max_length=20)]


def chart_groups(metrics: dict[str, Any]) -> list[list[str]]:
    """One chart per metric, ``train_x`` and ``val_x`` together."""
    names = sorted(k for k, v in metrics.items() if isinstance(v, int | float))
    groups: dict[str, list[str]] = {}
    for name in names:
        base = name.removeprefix("train_").removeprefix("val_")
        groups.setdefault(base, []).append(name)
    return [sorted(g, key=lambda n: (not n.startswith("train_"), n)) for g in groups.values()]


@router.get("/experiments/{experiment_id}")
async def experiment(
    request: Request, state: StateDep, api: UserApiDep, experiment_id: uuid.UUID, error: str = ""
) -> Response:
    found, unread, alerts = await asyncio.gather(
        api.get(f"/experiments/{experiment_id}"),
        unread_count(api),
        experiment_alerts(api, experiment_id),
    )
    dataset = None
    if found.get("dataset_id"):
        try:
            dataset = await api.get(f"/datasets/{found['dataset_id']}")
        except ApiProblem:
            dataset = None
    groups = chart_groups(found.get("metrics") or {})
    # the charts' first read, preloaded by the page's head (see compare)
    query = [("buckets", str(EXPERIMENT_BUCKETS))] + [("metric", m) for g in groups for m in g]
    return page(
        request,
        state.templates,
        "experiment.html",
        {
            "e": found,
            "dataset": dataset,
            "actions": ACTIONS.get(found["status"], []),
            "groups": groups,
            "groups_json": json.dumps(groups),
            "history_url": f"/console-api/experiments/{found['id']}/history?{urlencode(query)}"
            if groups
            else "",
            "config_json": json.dumps(found.get("config") or {}, indent=2, sort_keys=True),
            "error": error[:300],
            "unread": unread,
            "alerts": alerts,
        },
    )


@router.post("/experiments/{experiment_id}/notes", dependencies=[CsrfDep])
async def save_notes(
    api: UserApiDep, experiment_id: uuid.UUID, notes: Annotated[str, Form(max_length=100_000)] = ""
) -> Response:
    await api.json("PATCH", f"/experiments/{experiment_id}", json={"notes": notes})
    return RedirectResponse(f"/experiments/{experiment_id}", status_code=303)


@router.post("/experiments/{experiment_id}/{action}", dependencies=[CsrfDep])
async def lifecycle(
    api: UserApiDep,
    experiment_id: uuid.UUID,
    action: str,
    reason: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    if action not in LIFECYCLE:
        raise ApiProblem(404, {"title": "Not Found", "status": 404})
    body: dict[str, Any] | None = None
    if action == "cancel" and reason:
        body = {"reason": reason}
    elif action == "fail" and reason:
        body = {"error": reason}
    try:
        await api.json("POST", f"/experiments/{experiment_id}/{action}", json=body)
    except ApiProblem as exc:
        if exc.status != 409:
            raise
        message = str(exc.problem.get("detail") or exc.problem.get("title"))
        return RedirectResponse(
            f"/experiments/{experiment_id}?error={quote(message)}", status_code=303
        )
    return RedirectResponse(f"/experiments/{experiment_id}", status_code=303)


@router.get("/compare")
async def compare(
    request: Request,
    state: StateDep,
    api: UserApiDep,
    id: Annotated[list[uuid.UUID] | None, Query(max_length=MAX_COMPARED)] = None,
) -> Response:
    ids = list(dict.fromkeys(id or []))
    found = await asyncio.gather(*(api.get(f"/experiments/{i}") for i in ids))
    keys = sorted({k for e in found for k in (e.get("hyperparameters") or {})})
    params = [
        {
            "key": key,
            "values": [(e.get("hyperparameters") or {}).get(key) for e in found],
        }
        for key in keys
    ]
    for row in params:
        row["differs"] = len({json.dumps(v, sort_keys=True) for v in row["values"]}) > 1
    metric_keys = sorted({k for e in found for k in (e.get("metrics") or {})})
    merged: dict[str, Any] = {k: 0.0 for k in metric_keys}
    groups = chart_groups(merged)
    # the charts' one read, named here so that the page's head can have the browser fetch it
    # while it still loads the scripts that will draw it (<link rel=preload>)
    query = [("buckets", str(COMPARE_BUCKETS))]
    query += [("id", str(e["id"])) for e in found]
    query += [("metric", m) for group in groups for m in group]
    return page(
        request,
        state.templates,
        "compare.html",
        {
            "experiments": found,
            "params": params,
            "metric_keys": metric_keys,
            "groups_json": json.dumps(groups),
            "histories_url": "/console-api/histories?" + urlencode(query),
            "ids_json": json.dumps([str(e["id"]) for e in found]),
            "names_json": json.dumps([e["name"] for e in found]),
            "unread": await unread_count(api),
        },
    )


@router.get("/console-api/experiments/{experiment_id}/history")
async def history(
    api: UserApiDep,
    experiment_id: uuid.UUID,
    buckets: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    from_epoch: Annotated[int | None, Query(ge=0)] = None,
    to_epoch: Annotated[int | None, Query(ge=0)] = None,
    metric: MetricParam = None,
) -> Response:
    params: dict[str, Any] = {"buckets": buckets, "from_epoch": from_epoch, "to_epoch": to_epoch}
    params["metric"] = metric or []
    response = await api.send(
        "GET",
        f"/experiments/{experiment_id}/history",
        params={k: v for k, v in params.items() if v is not None},
    )
    return Response(
        response.content,
        status_code=response.status_code,
        media_type=response.headers.get("content-type", "application/json"),
    )


@router.get("/console-api/histories")
async def histories(
    api: UserApiDep,
    id: Annotated[list[uuid.UUID], Query(min_length=1, max_length=MAX_COMPARED)],
    buckets: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    metric: MetricParam = None,
) -> Response:
    """The histories of several experiments in one answer (the compare page): read in parallel
    here, so the browser waits for one request instead of queueing ten."""
    params: dict[str, Any] = {"buckets": buckets, "metric": metric or []}
    answers = await asyncio.gather(
        *(api.send("GET", f"/experiments/{i}/history", params=params) for i in dict.fromkeys(id))
    )
    for answer in answers:
        if answer.status_code >= 400:
            raise ApiProblem(answer.status_code, problem_of(answer))
    # the API's documents as they came: no parsing and writing again
    return Response(
        b'{"items":[' + b",".join(a.content for a in answers) + b"]}",
        media_type="application/json",
    )


@router.get("/console-api/unread-count")
async def unread(api: UserApiDep) -> Response:
    return JSONResponse({"unread_count": await unread_count(api)})
