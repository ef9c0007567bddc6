"""The model registry: the user's registered models (search by name), a model's page (its
versions with status, size, SHA-256 and the experiment each came from; its aliases, moved or
removed; archive and delete, where the API's 409 for a version that holds an alias is shown as
the form's error; a new version from an experiment's artifact), and a version's page (its
schemas and its prediction stats over a window, with charts).

The version page reads the window's stats (totals, exact percentiles, the confidence histogram,
drift) and, for its charts of latency percentiles and prediction count over time, the window's
series of ``SERIES_BUCKETS`` buckets in one more read (``.../predictions/stats/series``).
A model page follows ``model.*`` / ``model_version.*`` events (``static/js/model.js``): an alias
moved elsewhere shows without a reload.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import posixpath
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse, Response

from runyard.console.gateway import ApiProblem, UserApi
from runyard.console.pages.artifacts import streamed
from runyard.console.pages.experiments import unread_count
from runyard.console.pages.forms import refusal_text
from runyard.console.render import page
from runyard.console.web import CsrfDep, StateDep, UserApiDep

router = APIRouter()

PAGE_SIZE = 50
#: the version page's windows (label, length)
WINDOWS = {"1h": timedelta(hours=1), "24h": timedelta(days=1), "7d": timedelta(days=7)}
SERIES_BUCKETS = 12
Name = Annotated[str, Form(max_length=255)]
Text = Annotated[str, Form(max_length=10_000)]


def model_url(model_id: str, anchor: str = "") -> str:
    return f"/models/{model_id}" + (f"#{anchor}" if anchor else "")


@router.get("/models")
async def models(
    request: Request,
    state: StateDep,
    api: UserApiDep,
    q: Annotated[str, Query(max_length=255)] = "",
    cursor: Annotated[str, Query(max_length=2000)] = "",
    experiment_id: Annotated[str, Query(max_length=64)] = "",
    artifact_path: Annotated[str, Query(max_length=1024)] = "",
) -> Response:
    """``experiment_id`` and ``artifact_path`` fill the register form in (a link from an
    experiment's artifact can carry them)."""
    form = {"experiment_id": experiment_id, "artifact_path": artifact_path}
    return await list_page(request, state, api, q=q, cursor=cursor, form=form)


async def list_page(
    request: Request,
    state: StateDep,
    api: UserApi,
    *,
    q: str = "",
    cursor: str = "",
    form: dict[str, Any] | None = None,
    error: str = "",
    status: int = 200,
) -> Response:
    found, experiments, unread = await asyncio.gather(
        api.get("/models", limit=PAGE_SIZE, cursor=cursor, name_contains=q.strip()),
        recent_experiments(api, str((form or {}).get("experiment_id") or "").strip()),
        unread_count(api),
    )
    next_cursor = found.get("next_cursor")
    query = {"q": q, "cursor": next_cursor} if q else {"cursor": next_cursor}
    context = {
        "models": found["items"],
        "q": q,
        "next_url": f"/models?{urlencode(query)}" if next_cursor else None,
        "experiments": experiments,
        "form": form or {},
        "error": error,
        "unread": unread,
    }
    return page(request, state.templates, "models.html", context, status_code=status)


async def recent_experiments(api: UserApi, chosen: str = "") -> list[dict[str, Any]]:
    """The experiments a register form offers: the newest 100, and ``chosen`` (the form's
    experiment, e.g. from an artifact's link) when it is older than those."""
    found = await api.get("/experiments", limit=100)
    offered = list(found["items"])
    if chosen and all(str(e["id"]) != chosen for e in offered):
        with contextlib.suppress(ApiProblem):  # not the caller's, or gone: not offered
            offered.insert(0, await api.get(f"/experiments/{quote(chosen, safe='')}"))
    return offered


def version_body(experiment_id: str, artifact_path: str, description: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "experiment_id": experiment_id.strip(),
        "artifact_path": artifact_path.strip(),
    }
    if description.strip():
        body["description"] = description.strip()
    return body


def version_form(experiment_id: str, artifact_path: str, description: str) -> dict[str, str]:
    """A register form's version fields as typed (shown again with an error)."""
    return {
        "experiment_id": experiment_id,
        "artifact_path": artifact_path,
        "description": description,
    }


async def post_version(api: UserApi, model_id: str, form: dict[str, str]) -> dict[str, Any]:
    """A new version of the model from a register form; ``ApiProblem`` as the API answers."""
    created: dict[str, Any] = await api.json(
        "POST",
        f"/models/{quote(model_id, safe='')}/versions",
        json=version_body(form["experiment_id"], form["artifact_path"], form["description"]),
    )
    return created


@router.post("/models", dependencies=[CsrfDep])
async def register(
    request: Request,
    state: StateDep,
    api: UserApiDep,
    name: Name,
    experiment_id: Annotated[str, Form(max_length=64)],
    artifact_path: Annotated[str, Form(max_length=1024)],
    description: Text = "",
) -> Response:
    """A version of the model ``name`` (created when the user has none by that name)."""
    form = {"name": name, **version_form(experiment_id, artifact_path, description)}
    try:
        found = await api.get("/models", name=name.strip(), limit=1)
        if found["items"]:
            model = found["items"][0]
        else:
            model = await api.json("POST", "/models", json={"name": name.strip()})
        version = await post_version(api, str(model["id"]), form)
    except ApiProblem as exc:
        if exc.status >= 500 or exc.status == 401:
            raise
        error = refusal_text(exc.problem)
        return await list_page(request, state, api, form=form, error=error, status=exc.status)
    return RedirectResponse(f"/models/{model['id']}/versions/{version['version']}", 303)


async def model_context(api: UserApi, model_id: str, archived: bool) -> dict[str, Any]:
    model, versions, experiments = await asyncio.gather(
        api.get(f"/models/{model_id}"),
        api.get(f"/models/{model_id}/versions", limit=100, archived=archived or None),
        recent_experiments(api),
    )
    names = {str(e["id"]): e["name"] for e in experiments}
    rows = [
        {**v, "experiment_name": names.get(str(v.get("experiment_id")))} for v in versions["items"]
    ]
    aliases = sorted((model.get("aliases") or {}).items())
    return {
        "model": model,
        "versions": rows,
        "more_versions": bool(versions.get("next_cursor")),
        "aliases": aliases,
        "archived": archived,
        "experiments": experiments,
    }


@router.get("/models/{model_id}")
async def model_page(
    request: Request,
    state: StateDep,
    api: UserApiDep,
    model_id: str,
    archived: bool = False,
) -> Response:
    return await render_model(request, state, api, model_id, archived=archived)


async def render_model(
    request: Request,
    state: StateDep,
    api: UserApi,
    model_id: str,
    *,
    archived: bool = False,
    error: str = "",
    error_for: str = "",
    form: dict[str, Any] | None = None,
    status: int = 200,
) -> Response:
    context, unread = await asyncio.gather(
        model_context(api, quote(model_id, safe=""), archived), unread_count(api)
    )
    context.update(error=error, error_for=error_for, form=form or {}, unread=unread)
    return page(request, state.templates, "model.html", context, status_code=status)


async def act(
    request: Request,
    state: StateDep,
    api: UserApi,
    model_id: str,
    call: Any,
    *,
    error_for: str,
    form: dict[str, Any] | None = None,
    anchor: str = "",
) -> Response:
    """Do ``call`` (an API request) and go back to the model's page; a refusal (409: the
    version holds an alias, 422...) is shown there as the form's error."""
    try:
        await call
    except ApiProblem as exc:
        if exc.status >= 500 or exc.status == 401:
            raise
        return await render_model(
            request,
            state,
            api,
            model_id,
            error=refusal_text(exc.problem),
            error_for=error_for,
            form=form,
            status=exc.status,
        )
    return RedirectResponse(model_url(model_id, anchor), status_code=303)


@router.post("/models/{model_id}/aliases", dependencies=[CsrfDep])
async def set_alias(
    request: Request,
    state: StateDep,
    api: UserApiDep,
    model_id: str,
    alias: Annotated[str, Form(max_length=255)],
    version: Annotated[str, Form(max_length=12)],
) -> Response:
    """Create or move an alias (one atomic change on the API's side)."""
    number: Any = int(version) if version.strip().isdigit() else version
    path = f"/models/{quote(model_id, safe='')}/aliases/{quote(alias.strip(), safe='')}"
    call = api.json("PUT", path, json={"version": number})
    form = {"alias": alias, "version": version}
    return await act(
        request, state, api, model_id, call, error_for="alias", form=form, anchor="aliases"
    )


@router.post("/models/{model_id}/aliases/{alias}/delete", dependencies=[CsrfDep])
async def delete_alias(
    request: Request, state: StateDep, api: UserApiDep, model_id: str, alias: str
) -> Response:
    path = f"/models/{quote(model_id, safe='')}/aliases/{quote(alias, safe='')}"
    call = api.json("DELETE", path)
    return await act(request, state, api, model_id, call, error_for="alias", anchor="aliases")


@router.post("/models/{model_id}/versions/{version}/archive", dependencies=[CsrfDep])
async def archive_version(
    request: Request, state: StateDep, api: UserApiDep, model_id: str, version: int
) -> Response:
    call = api.json("POST", f"/models/{quote(model_id, safe='')}/versions/{version}/archive")
    return await act(
        request, state, api, model_id, call, error_for=f"v{version}", anchor="versions"
    )


@router.post("/models/{model_id}/versions/{version}/delete", dependencies=[CsrfDep])
async def delete_version(
    request: Request, state: StateDep, api: UserApiDep, model_id: str, version: int
) -> Response:
    call = api.json("DELETE", f"/models/{quote(model_id, safe='')}/versions/{version}")
    return await act(
        request, state, api, model_id, call, error_for=f"v{version}", anchor="versions"
    )


@router.post("/models/{model_id}/versions", dependencies=[CsrfDep])
async def register_version(
    request: Request,
    state: StateDep,
    api: UserApiDep,
    model_id: str,
    experiment_id: Annotated[str, Form(max_length=64)],
    artifact_path: Annotated[str, Form(max_length=1024)],
    description: Text = "",
) -> Response:
    form = version_form(experiment_id, artifact_path, description)
    try:
        created = await post_version(api, model_id, form)
    except ApiProblem as exc:
        if exc.status >= 500 or exc.status == 401:
            raise
        return await render_model(
            request,
            state,
            api,
            model_id,
            error=refusal_text(exc.problem),
            error_for="register",
            form=form,
            status=exc.status,
        )
    return RedirectResponse(f"/models/{model_id}/versions/{created['version']}", 303)


# ------------------------------------------------------------------------------ a version
def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


async def stats_series(
    api: UserApi, path: str, end: datetime, length: timedelta
) -> dict[str, list[Any]]:
    """Count, error rate and latency percentiles per bucket of the window, ``SERIES_BUCKETS``
    buckets of ``length / SERIES_BUCKETS`` (whole minutes), in one read of ``.../stats/series``
    (percentiles from the rollups' histograms): what the charts draw, each at its bucket's end."""
    interval = max(60, int(length.total_seconds()) // SERIES_BUCKETS // 60 * 60)
    found = await api.get(
        f"{path}/series", **{"from": iso(end - length), "to": iso(end), "interval": interval}
    )
    buckets = found["buckets"]
    return {
        "t": [int(datetime.fromisoformat(b["end"]).timestamp()) for b in buckets],
        "count": [b["count"] for b in buckets],
        "error_rate": [b["error_rate"] for b in buckets],
        "p50": [b["latency_ms"]["p50"] for b in buckets],
        "p95": [b["latency_ms"]["p95"] for b in buckets],
        "p99": [b["latency_ms"]["p99"] for b in buckets],
    }


@router.get("/models/{model_id}/versions/{version}")
async def version_page(
    request: Request,
    state: StateDep,
    api: UserApiDep,
    model_id: str,
    version: int,
    window: Annotated[str, Query(max_length=8)] = "24h",
) -> Response:
    window = window if window in WINDOWS else "24h"
    length = WINDOWS[window]
    end = datetime.now(UTC).replace(microsecond=0)
    base = f"/models/{quote(model_id, safe='')}"
    stats_path = f"{base}/versions/{version}/predictions/stats"
    model, found, files, stats, series, recent, unread = await asyncio.gather(
        api.get(base),
        api.get(f"{base}/versions/{version}"),
        api.get(f"{base}/versions/{version}/files"),
        api.get(stats_path, **{"from": iso(end - length), "to": iso(end)}),
        stats_series(api, stats_path, end, length),
        api.get(f"{base}/versions/{version}/predictions", limit=20),
        unread_count(api),
    )
    chart_data = {
        "series": series,
        "histogram": stats["confidence"]["buckets"],
    }
    context = {
        "model": model,
        "version": found,
        "files": files,
        "stats": stats,
        "recent": recent["items"],
        "window": window,
        "windows": list(WINDOWS),
        "chart": chart_data,
        "input_schema": pretty(found.get("input_schema")),
        "output_schema": pretty(found.get("output_schema")),
        "unread": unread,
    }
    return page(request, state.templates, "model_version.html", context)


@router.get("/models/{model_id}/versions/{version}/files/raw")
async def version_file(
    request: Request,
    state: StateDep,
    api: UserApiDep,
    model_id: str,
    version: int,
    path: Annotated[str, Query(min_length=1, max_length=1024)],
) -> Response:
    """One of the version's files, streamed from the API as a download (never shown as this
    site: a model's files are whatever its maker uploaded)."""
    base = f"/models/{quote(model_id, safe='')}/versions/{version}/files"
    files = await api.get(base)  # renews the token when due
    if not any(f["path"] == path for f in files):
        raise ApiProblem(404, {"title": "Not Found", "detail": "The version has no such file."})
    return await streamed(
        request, state, api, f"{base}/{quote(path, safe='/')}", name=posixpath.basename(path)
    )


def pretty(value: Any) -> str | None:
    return None if value is None else json.dumps(value, indent=2, sort_keys=True)
