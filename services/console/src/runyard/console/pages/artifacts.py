"""An experiment's artifacts: a browser over their paths (a folder per path prefix, with the
files and bytes below it), a preview of images and text, downloads streamed through the
console (the browser holds no API token) and deleting one after a confirmation page."""

from __future__ import annotations

import asyncio
import json
import mimetypes
import posixpath
import uuid
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from starlette.background import BackgroundTask

from runyard.console.gateway import ApiProblem, UserApi, client_headers, problem_of
from runyard.console.pages.experiments import unread_count
from runyard.console.render import page
from runyard.console.web import ConsoleState, CsrfDep, StateDep, UserApiDep

router = APIRouter()

#: artifacts read for one folder view (pages of the API's largest size)
MAX_LISTED = 5000
LIST_PAGE = 500
#: the bytes of a text file shown on its page
TEXT_PREVIEW_BYTES = 64 * 1024
#: images a browser may show inline: raster formats only (an SVG may carry scripts)
INLINE_IMAGES = frozenset(
    {"image/png", "image/jpeg", "image/gif", "image/webp", "image/avif", "image/bmp"}
)
TEXT_TYPES = frozenset(
    {
        "application/json",
        "application/x-ndjson",
        "application/yaml",
        "application/x-yaml",
        "application/xml",
        "application/toml",
        "application/csv",
    }
)
TEXT_SUFFIXES = frozenset(
    {".txt", ".log", ".md", ".csv", ".tsv", ".json", ".jsonl", ".yaml", ".yml", ".py"}
    | {".toml", ".cfg", ".ini", ".xml", ".out", ".err"}
)
PathParam = Annotated[str, Query(min_length=1, max_length=1024)]


def api_path(experiment_id: uuid.UUID, path: str) -> str:
    return f"/experiments/{experiment_id}/artifacts/{quote(path, safe='/')}"


def is_text(artifact: dict[str, Any]) -> bool:
    kind = str(artifact.get("content_type") or "").split(";")[0].strip().lower()
    suffix = posixpath.splitext(str(artifact["path"]))[1].lower()
    return kind.startswith("text/") or kind in TEXT_TYPES or suffix in TEXT_SUFFIXES


def is_image(artifact: dict[str, Any]) -> bool:
    kind = str(artifact.get("content_type") or "").split(";")[0].strip().lower()
    if kind == "application/octet-stream":
        kind = mimetypes.guess_type(str(artifact["path"]))[0] or kind
    return kind in INLINE_IMAGES


async def list_under(
    api: UserApi, experiment_id: uuid.UUID, prefix: str
) -> tuple[list[dict[str, Any]], bool]:
    """Every artifact whose path starts with ``prefix`` (up to MAX_LISTED), and whether that
    was all of them."""
    found: list[dict[str, Any]] = []
    cursor = ""
    while len(found) < MAX_LISTED:
        listed = await api.get(
            f"/experiments/{experiment_id}/artifacts",
            prefix=prefix,
            limit=LIST_PAGE,
            cursor=cursor,
        )
        found += listed["items"]
        cursor = listed.get("next_cursor") or ""
        if not cursor:
            return found, True
    return found, False


def folder_view(artifacts: list[dict[str, Any]], prefix: str) -> dict[str, Any]:
    """One level of the tree: the sub-folders (files and bytes below each) and the files."""
    folders: dict[str, dict[str, Any]] = {}
    files = []
    for artifact in artifacts:
        rest = str(artifact["path"])[len(prefix) :]
        if "/" in rest:
            name = rest.split("/", 1)[0]
            folder = folders.setdefault(
                name, {"name": name, "prefix": f"{prefix}{name}/", "files": 0, "size": 0}
            )
            folder["files"] += 1
            folder["size"] += int(artifact.get("size") or 0)
        else:
            files.append({**artifact, "name": rest})
    return {
        "folders": sorted(folders.values(), key=lambda f: f["name"]),
        "files": sorted(files, key=lambda f: f["name"]),
        "total_size": sum(int(a.get("size") or 0) for a in artifacts),
    }


def crumbs(prefix: str) -> list[dict[str, str]]:
    parts = [p for p in prefix.split("/") if p]
    return [{"name": p, "prefix": "/".join(parts[: i + 1]) + "/"} for i, p in enumerate(parts)]


async def artifact_of(api: UserApi, experiment_id: uuid.UUID, path: str) -> dict[str, Any]:
    """The artifact at exactly ``path`` (its size and type), else the API's own 404."""
    listed = await api.get(f"/experiments/{experiment_id}/artifacts", prefix=path, limit=LIST_PAGE)
    for artifact in listed["items"]:
        if artifact["path"] == path:
            return dict(artifact)
    raise ApiProblem(404, {"title": "Not Found", "status": 404})


@router.get("/experiments/{experiment_id}/artifacts")
async def browse(
    request: Request,
    state: StateDep,
    api: UserApiDep,
    experiment_id: uuid.UUID,
    prefix: Annotated[str, Query(max_length=1024)] = "",
    deleted: Annotated[str, Query(max_length=1024)] = "",
) -> Response:
    prefix = prefix.lstrip("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    experiment, (artifacts, complete), unread = await asyncio.gather(
        api.get(f"/experiments/{experiment_id}"),
        list_under(api, experiment_id, prefix),
        unread_count(api),
    )
    return page(
        request,
        state.templates,
        "artifacts.html",
        {
            "e": experiment,
            "prefix": prefix,
            "crumbs": crumbs(prefix),
            "view": folder_view(artifacts, prefix),
            "count": len(artifacts),
            "complete": complete,
            "deleted": deleted,
            "unread": unread,
        },
    )


@router.get("/experiments/{experiment_id}/artifacts/view")
async def view(
    request: Request, state: StateDep, api: UserApiDep, experiment_id: uuid.UUID, path: PathParam
) -> Response:
    experiment, artifact, unread = await asyncio.gather(
        api.get(f"/experiments/{experiment_id}"),
        artifact_of(api, experiment_id, path),
        unread_count(api),
    )
    text = None
    truncated = False
    if is_text(artifact) and artifact["size"]:
        answer = await api.send(
            "GET",
            api_path(experiment_id, path),
            headers={"Range": f"bytes=0-{TEXT_PREVIEW_BYTES - 1}"},
        )
        if answer.status_code >= 400:
            raise ApiProblem(answer.status_code, problem_of(answer))
        text = answer.content[:TEXT_PREVIEW_BYTES].decode("utf-8", errors="replace")
        truncated = artifact["size"] > TEXT_PREVIEW_BYTES
    folder = posixpath.dirname(path)
    return page(
        request,
        state.templates,
        "artifact.html",
        {
            "e": experiment,
            "a": artifact,
            "folder": f"{folder}/" if folder else "",
            "crumbs": crumbs(f"{folder}/" if folder else ""),
            "image": is_image(artifact),
            "text": text,
            "truncated": truncated,
            "raw_url": raw_url(experiment_id, path),
            "download_url": raw_url(experiment_id, path, download=True),
            "unread": unread,
        },
    )


def raw_url(experiment_id: uuid.UUID, path: str, *, download: bool = False) -> str:
    query = {"path": path, **({"download": "1"} if download else {})}
    return f"/experiments/{experiment_id}/artifacts/raw?{urlencode(query)}"


@router.get("/experiments/{experiment_id}/artifacts/raw")
async def raw(
    request: Request,
    state: StateDep,
    api: UserApiDep,
    experiment_id: uuid.UUID,
    path: PathParam,
    download: bool = False,
) -> Response:
    """The file, streamed from the API to the browser. Only raster images are served for
    showing in the page; anything else is a download (``application/octet-stream``, as an
    attachment), so an uploaded HTML or SVG file never runs as this site."""
    artifact = await artifact_of(api, experiment_id, path)  # renews the token when due
    name = posixpath.basename(path)
    inline = is_image(artifact) and not download
    kind = str(artifact.get("content_type") or "") if inline else "application/octet-stream"
    if inline and kind == "application/octet-stream":
        kind = mimetypes.guess_type(name)[0] or kind
    return await streamed(
        request, state, api, api_path(experiment_id, path), name=name, kind=kind, inline=inline
    )


async def streamed(
    request: Request,
    state: ConsoleState,
    api: UserApi,
    path: str,
    *,
    name: str,
    kind: str = "application/octet-stream",
    inline: bool = False,
) -> StreamingResponse:
    """The API's download at ``path`` (under ``/api/v1``), streamed to the browser as ``name``:
    shown in the page when ``inline``, else an attachment. The caller has just asked the API
    something with ``api`` (which renews its token when due)."""
    upstream = await state.gateway.http.send(
        state.gateway.http.build_request(
            "GET",
            f"/api/v1{path}",
            headers={
                **client_headers(request),
                "Authorization": f"Bearer {api.session.access_token}",
            },
        ),
        stream=True,
    )
    if upstream.status_code >= 400:
        await upstream.aread()
        await upstream.aclose()
        raise ApiProblem(upstream.status_code, problem_of(upstream))
    headers = {
        "Content-Disposition": f"{'inline' if inline else 'attachment'}; "
        f"filename*=UTF-8''{quote(name, safe='')}",
    }
    length = upstream.headers.get("content-length")
    if length and not upstream.headers.get("content-encoding"):
        headers["Content-Length"] = length
    if etag := upstream.headers.get("etag"):
        headers["ETag"] = etag
    return StreamingResponse(
        upstream.aiter_bytes(),
        media_type=kind,
        headers=headers,
        background=BackgroundTask(upstream.aclose),
    )


@router.get("/experiments/{experiment_id}/artifacts/delete")
async def confirm_delete(
    request: Request, state: StateDep, api: UserApiDep, experiment_id: uuid.UUID, path: PathParam
) -> Response:
    experiment, artifact, unread = await asyncio.gather(
        api.get(f"/experiments/{experiment_id}"),
        artifact_of(api, experiment_id, path),
        unread_count(api),
    )
    folder = posixpath.dirname(path)
    return page(
        request,
        state.templates,
        "artifact_delete.html",
        {
            "e": experiment,
            "a": artifact,
            "folder": f"{folder}/" if folder else "",
            "unread": unread,
        },
    )


@router.post("/experiments/{experiment_id}/artifacts/delete", dependencies=[CsrfDep])
async def delete(
    api: UserApiDep,
    experiment_id: uuid.UUID,
    path: Annotated[str, Form(min_length=1, max_length=1024)],
) -> Response:
    await api.json("DELETE", api_path(experiment_id, path))
    folder = posixpath.dirname(path)
    query = urlencode({"prefix": f"{folder}/" if folder else "", "deleted": path})
    return RedirectResponse(f"/experiments/{experiment_id}/artifacts?{query}", status_code=303)


# --- explanations ----------------------------------------------------------------------------

#: bars of one attribution chart: the largest by magnitude
MAX_BARS = 25
#: keys an explanation's data names its attributions by (the API stores any JSON object)
ATTRIBUTION_KEYS = (
    "attributions",
    "feature_attributions",
    "importances",
    "feature_importances",
    "feature_importance",
    "shap_values",
    "values",
    "scores",
)
NAME_KEYS = ("features", "feature_names", "names", "labels")


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and abs(value) < 1e300


def attributions(data: dict[str, Any]) -> list[tuple[str, float]] | None:
    """Feature attributions, if the explanation holds them in a shape a bar chart can show:
    ``{"attributions": {name: value}}``, ``{"features": [...], "attributions": [...]}``,
    ``{"attributions": [...]}`` (features by position) or a flat ``{name: value}`` object."""
    names = next((data[k] for k in NAME_KEYS if isinstance(data.get(k), list)), None)
    for key in ATTRIBUTION_KEYS:
        found = data.get(key)
        if isinstance(found, dict) and found and all(_finite(v) for v in found.values()):
            return [(str(k), float(v)) for k, v in found.items()]
        if isinstance(found, list) and found and all(_finite(v) for v in found):
            labels = names if names and len(names) == len(found) else None
            return [
                (str(labels[i]) if labels else f"feature {i}", float(v))
                for i, v in enumerate(found)
            ]
    flat = {k: v for k, v in data.items() if k not in ("base_value", "expected_value")}
    if flat and all(_finite(v) for v in flat.values()):
        return [(str(k), float(v)) for k, v in flat.items()]
    return None


def bar_chart(pairs: list[tuple[str, float]]) -> dict[str, Any]:
    """The largest attributions by magnitude as bars of an SVG (drawn by the template: sizes
    are attributes, which the CSP allows, not styles), positive right of zero, negative left."""
    top = sorted(pairs, key=lambda p: abs(p[1]), reverse=True)[:MAX_BARS]
    largest = max((abs(v) for _n, v in top), default=0.0) or 1.0
    has_negative = any(v < 0 for _n, v in top)
    zero = 50.0 if has_negative else 0.0
    span = 50.0 if has_negative else 100.0
    bars = []
    for i, (name, value) in enumerate(top):
        width = abs(value) / largest * span
        bars.append(
            {
                "name": name,
                "value": value,
                "y": i * 22,
                "x": zero - width if value < 0 else zero,
                "width": max(width, 0.3),
                "negative": value < 0,
            }
        )
    return {"bars": bars, "height": len(bars) * 22, "zero": zero, "total": len(pairs)}


@router.get("/experiments/{experiment_id}/explanations")
async def explanations(
    request: Request,
    state: StateDep,
    api: UserApiDep,
    experiment_id: uuid.UUID,
    method: Annotated[str, Query(max_length=50)] = "",
    cursor: Annotated[str, Query(max_length=2000)] = "",
) -> Response:
    experiment, listed, unread = await asyncio.gather(
        api.get(f"/experiments/{experiment_id}"),
        api.get(
            f"/experiments/{experiment_id}/explanations", method=method, limit=20, cursor=cursor
        ),
        unread_count(api),
    )
    items = []
    for explanation in listed["items"]:
        data = explanation.get("explanation_data") or {}
        pairs = attributions(data) if isinstance(data, dict) else None
        items.append(
            {
                **explanation,
                "chart": bar_chart(pairs) if pairs else None,
                "data_json": json.dumps(data, indent=2, sort_keys=True)[:20_000],
            }
        )
    next_cursor = listed.get("next_cursor")
    query = {"method": method} if method else {}
    return page(
        request,
        state.templates,
        "explanations.html",
        {
            "e": experiment,
            "items": items,
            "method": method,
            "methods": (
                "shap",
                "lime",
                "integrated_gradients",
                "grad_cam",
                "saliency",
                "attention",
                "other",
            ),
            "next_url": f"/experiments/{experiment_id}/explanations?"
            + urlencode({**query, "cursor": next_cursor})
            if next_cursor
            else None,
            "unread": unread,
        },
    )
