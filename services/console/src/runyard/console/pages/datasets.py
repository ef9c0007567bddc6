"""Datasets and the jobs that make them: the datasets with their signals and features, one
signal's waveform (the API's downsampled samples read), the generation and import forms (an
upload shows its progress), and a job's page whose progress bar moves while it runs."""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.datastructures import UploadFile

from runyard.console.gateway import ApiProblem, UserApi
from runyard.console.pages.experiments import unread_count
from runyard.console.pages.projects import field_errors
from runyard.console.render import page
from runyard.console.web import CsrfDep, StateDep, UserApiDep

router = APIRouter()

PAGE_SIZE = 50
JOB_KINDS = {"generations": "dataset-generations", "imports": "dataset-imports"}
FAULT_CLASSES = ("normal", "imbalance", "misalignment", "bearing_defect", "cavitation")
SEVERITIES = ("mild", "moderate", "severe")
#: the waveform's first read: about two buckets per pixel of a full-width chart
WAVEFORM_BUCKETS = 2000
GENERATION_NUMBERS = {
    "signals_per_combination": "int",
    "sample_rate_hz": "float",
    "duration_s": "float",
    "shaft_frequency_hz": "float",
    "noise_std": "float",
    "seed": "int",
}
GENERATION_TEXT = ("name", "dataset_name", "description")
IMPORT_FIELDS = ("name", "dataset_name", "description", "sample_rate_hz")


def job_url(kind: str, job_id: object) -> str:
    return f"/datasets/jobs/{kind}/{job_id}"


@router.get("/datasets")
async def datasets(
    request: Request,
    state: StateDep,
    api: UserApiDep,
    cursor: Annotated[str, Query(max_length=2000)] = "",
) -> Response:
    found, generations, imports, unread = await asyncio.gather(
        api.get("/datasets", limit=PAGE_SIZE, cursor=cursor),
        api.get("/dataset-generations", limit=10),
        api.get("/dataset-imports", limit=10),
        unread_count(api),
    )
    jobs = [{**j, "kind": "generations"} for j in generations["items"]]
    jobs += [{**j, "kind": "imports"} for j in imports["items"]]
    jobs.sort(key=lambda j: str(j["created_at"]), reverse=True)
    next_cursor = found.get("next_cursor")
    return page(
        request,
        state.templates,
        "datasets.html",
        {
            "datasets": found["items"],
            "jobs": jobs[:10],
            "next_url": f"/datasets?{urlencode({'cursor': next_cursor})}" if next_cursor else None,
            "unread": unread,
        },
    )


def number_or_text(value: str, kind: str) -> Any:
    value = value.strip()
    try:
        return int(value) if kind == "int" else float(value)
    except ValueError:
        return value


@router.get("/datasets/generate")
async def generate_form(request: Request, state: StateDep, api: UserApiDep) -> Response:
    form = {
        "signals_per_combination": "10",
        "sample_rate_hz": "10240",
        "duration_s": "1",
        "shaft_frequency_hz": "25",
        "noise_std": "0.05",
        "fault_classes": list(FAULT_CLASSES),
        "severities": list(SEVERITIES),
    }
    return page(
        request,
        state.templates,
        "dataset_generate.html",
        {**generation_context(form, {}), "unread": await unread_count(api)},
    )


def generation_context(form: dict[str, Any], errors: dict[str, list[str]]) -> dict[str, Any]:
    return {
        "form": form,
        "errors": errors,
        "fault_classes": FAULT_CLASSES,
        "severities": SEVERITIES,
        "shown": [*GENERATION_TEXT, *GENERATION_NUMBERS, "fault_classes", "severities"],
    }


@router.post("/datasets/generate", dependencies=[CsrfDep])
async def generate(request: Request, state: StateDep, api: UserApiDep) -> Response:
    raw = await request.form()
    form: dict[str, Any] = {
        k: str(raw.get(k) or "") for k in (*GENERATION_TEXT, *GENERATION_NUMBERS)
    }
    form["fault_classes"] = [str(v) for v in raw.getlist("fault_classes")]
    form["severities"] = [str(v) for v in raw.getlist("severities")]
    body: dict[str, Any] = {"name": form["name"]}
    for key in ("dataset_name", "description"):
        if form[key].strip():
            body[key] = form[key].strip()
    for key, kind in GENERATION_NUMBERS.items():
        if form[key].strip():
            body[key] = number_or_text(form[key], kind)
    body["fault_classes"] = form["fault_classes"]
    body["severities"] = form["severities"]
    try:
        created = await api.json("POST", "/dataset-generations", json=body)
    except ApiProblem as exc:
        if exc.status not in (409, 422, 429):
            raise
        return page(
            request,
            state.templates,
            "dataset_generate.html",
            {
                **generation_context(form, field_errors(exc.problem)),
                "unread": await unread_count(api),
            },
            status_code=exc.status,
        )
    return RedirectResponse(job_url("generations", created["id"]), status_code=303)


@router.get("/datasets/import")
async def import_form(request: Request, state: StateDep, api: UserApiDep) -> Response:
    return page(
        request,
        state.templates,
        "dataset_import.html",
        {"form": {"sample_rate_hz": "10240"}, "errors": {}, "unread": await unread_count(api)},
    )


@router.post("/datasets/import", dependencies=[CsrfDep])
async def import_upload(request: Request, state: StateDep, api: UserApiDep) -> Response:
    """The upload, handed on to the API as the same multipart form. A script sends it (and
    shows the upload's progress) with ``Accept: application/json``: the answer is then the
    job's page, or the errors by field, as JSON; a plain form post gets the pages."""
    raw = await request.form()
    form = {k: str(raw.get(k) or "") for k in IMPORT_FIELDS}
    upload = raw.get("file")
    data = {k: v.strip() for k, v in form.items() if v.strip()}
    errors: dict[str, list[str]] = {}
    created = None
    if not isinstance(upload, UploadFile) or not upload.filename:
        errors["file"] = ["choose a .csv or .npz file"]
    else:
        await upload.seek(0)
        files = {
            "file": (
                upload.filename,
                upload.file,
                upload.content_type or "application/octet-stream",
            )
        }
        try:
            created = await api.json("POST", "/dataset-imports", data=data, files=files)
        except ApiProblem as exc:
            if exc.status not in (400, 409, 413, 415, 422, 429):
                raise
            errors = field_errors(exc.problem)
            if "" in errors and exc.status in (400, 413, 415):
                errors["file"] = errors.pop("")
    json_answer = "application/json" in request.headers.get("accept", "")
    if created is not None:
        target = job_url("imports", created["id"])
        if json_answer:
            return JSONResponse({"location": target}, status_code=202)
        return RedirectResponse(target, status_code=303)
    if json_answer:
        return JSONResponse({"errors": errors}, status_code=422)
    return page(
        request,
        state.templates,
        "dataset_import.html",
        {"form": form, "errors": errors, "unread": await unread_count(api)},
        status_code=422,
    )


async def job_of(api: UserApi, kind: str, job_id: uuid.UUID) -> dict[str, Any]:
    if kind not in JOB_KINDS:
        raise ApiProblem(404, {"title": "Not Found", "status": 404})
    found: dict[str, Any] = await api.get(f"/{JOB_KINDS[kind]}/{job_id}")
    return found


@router.get("/datasets/jobs/{kind}/{job_id}")
async def job(
    request: Request,
    state: StateDep,
    api: UserApiDep,
    kind: str,
    job_id: uuid.UUID,
    error: Annotated[str, Query(max_length=2000)] = "",
) -> Response:
    found, unread = await asyncio.gather(job_of(api, kind, job_id), unread_count(api))
    return page(
        request,
        state.templates,
        "dataset_job.html",
        {"j": found, "kind": kind, "error": error[:300], "unread": unread},
    )


@router.get("/console-api/dataset-jobs/{kind}/{job_id}")
async def job_json(api: UserApiDep, kind: str, job_id: uuid.UUID) -> Response:
    return JSONResponse(await job_of(api, kind, job_id))


@router.post("/datasets/jobs/{kind}/{job_id}/cancel", dependencies=[CsrfDep])
async def cancel_job(api: UserApiDep, kind: str, job_id: uuid.UUID) -> Response:
    await job_of(api, kind, job_id)
    try:
        await api.json("POST", f"/{JOB_KINDS[kind]}/{job_id}/cancel")
    except ApiProblem as exc:
        if exc.status != 409:
            raise
        message = str(exc.problem.get("detail") or exc.problem.get("title"))
        return RedirectResponse(f"{job_url(kind, job_id)}?error={quote(message)}", status_code=303)
    return RedirectResponse(job_url(kind, job_id), status_code=303)


@router.get("/datasets/{dataset_id}")
async def dataset(
    request: Request,
    state: StateDep,
    api: UserApiDep,
    dataset_id: uuid.UUID,
    fault_class: Annotated[str, Query(max_length=100)] = "",
    severity: Annotated[str, Query(max_length=50)] = "",
    cursor: Annotated[str, Query(max_length=2000)] = "",
) -> Response:
    found, signals, unread = await asyncio.gather(
        api.get(f"/datasets/{dataset_id}"),
        api.get(
            f"/datasets/{dataset_id}/signals",
            fault_class=fault_class,
            severity=severity,
            limit=PAGE_SIZE,
            cursor=cursor,
        ),
        unread_count(api),
    )
    query = {k: v for k, v in {"fault_class": fault_class, "severity": severity}.items() if v}
    next_cursor = signals.get("next_cursor")
    return page(
        request,
        state.templates,
        "dataset.html",
        {
            "ds": found,
            "signals": signals["items"],
            "filters": {"fault_class": fault_class, "severity": severity},
            "next_url": f"/datasets/{dataset_id}?{urlencode({**query, 'cursor': next_cursor})}"
            if next_cursor
            else None,
            "first_url": f"/datasets/{dataset_id}?{urlencode(query)}" if cursor else None,
            "unread": unread,
        },
    )


@router.get("/datasets/{dataset_id}/signals/{signal_id}")
async def signal(
    request: Request, state: StateDep, api: UserApiDep, dataset_id: uuid.UUID, signal_id: str
) -> Response:
    found, unread = await asyncio.gather(api.get(f"/datasets/{dataset_id}"), unread_count(api))
    # the signal's features: its row of the list (the API has no read of one signal)
    features = None
    cursor = ""
    for _ in range(20):
        listed = await api.get(f"/datasets/{dataset_id}/signals", limit=500, cursor=cursor)
        features = next((s for s in listed["items"] if s["signal_id"] == signal_id), None)
        cursor = listed.get("next_cursor") or ""
        if features is not None or not cursor:
            break
    if features is None:
        raise ApiProblem(404, {"title": "Not Found", "status": 404})
    samples_url = f"/console-api/datasets/{dataset_id}/signals/{quote(signal_id, safe='')}/samples"
    return page(
        request,
        state.templates,
        "signal.html",
        {
            "ds": found,
            "s": features,
            "samples_url": samples_url,
            "buckets": WAVEFORM_BUCKETS,
            "unread": unread,
        },
    )


@router.get("/console-api/datasets/{dataset_id}/signals/{signal_id}/samples")
async def samples(
    api: UserApiDep,
    dataset_id: uuid.UUID,
    signal_id: str,
    buckets: Annotated[int, Query(ge=1, le=10_000)] = WAVEFORM_BUCKETS,
    from_index: Annotated[int | None, Query(ge=0)] = None,
    to_index: Annotated[int | None, Query(ge=0)] = None,
) -> Response:
    params = {"buckets": buckets, "from_index": from_index, "to_index": to_index}
    response = await api.send(
        "GET",
        f"/datasets/{dataset_id}/signals/{quote(signal_id, safe='')}/samples",
        params={k: v for k, v in params.items() if v is not None},
    )
    return Response(
        response.content,
        status_code=response.status_code,
        media_type=response.headers.get("content-type", "application/json"),
    )
