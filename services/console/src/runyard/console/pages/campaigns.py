"""HPO and NAS campaigns: the lists, a campaign's page (its trials, the objective per trial
and best so far, one hyperparameter against the objective; live as its trial experiments
report, or its architectures are recorded: ``nas_trial.completed``), and the forms that create
them, the search space as rows of parameters with the API's 422 errors beside the field they
are about."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from runyard.console.gateway import ApiProblem, UserApi
from runyard.console.pages.experiments import unread_count
from runyard.console.pages.projects import field_errors
from runyard.console.render import page
from runyard.console.web import CsrfDep, StateDep, UserApiDep

router = APIRouter()

PAGE_SIZE = 50
#: rows of the search-space form (a script adds more)
SPACE_ROWS = 4
MAX_SPACE_ROWS = 50
#: NAS trials read for one page (pages of the API's largest size)
MAX_NAS_TRIALS = 5000
METHODS = ("random", "grid", "bayesian", "hyperband")
PRUNERS = ("none", "median", "hyperband")
PARAM_TYPES = ("float", "int", "categorical")


@router.get("/campaigns")
async def campaigns(request: Request, state: StateDep, api: UserApiDep) -> Response:
    hpo, nas, unread = await asyncio.gather(
        api.get("/hpo-campaigns", limit=PAGE_SIZE),
        api.get("/nas-campaigns", limit=PAGE_SIZE),
        unread_count(api),
    )
    return page(
        request,
        state.templates,
        "campaigns.html",
        {"hpo": hpo["items"], "nas": nas["items"], "unread": unread},
    )


# --- HPO -------------------------------------------------------------------------------------


def number_or_text(value: str, kind: str) -> Any:
    """A form's number as the API wants it; text that is no number goes as it is, so that the
    API's own message about it is shown at the field."""
    value = value.strip()
    try:
        return int(value) if kind == "int" else float(value)
    except ValueError:
        return value


def space_rows(form: Any) -> list[dict[str, str]]:
    rows = []
    for i in range(MAX_SPACE_ROWS):
        if f"p{i}_name" not in form:
            continue
        rows.append(
            {
                key: str(form.get(f"p{i}_{key}") or "")
                for key in ("name", "type", "low", "high", "step", "choices", "log")
            }
        )
    return rows


def search_space(rows: list[dict[str, str]]) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The API's ``search_space`` from the form's rows (blank rows skipped), and the problems
    only the form can see (a row without a name, a name given twice)."""
    space: dict[str, Any] = {}
    problems: dict[str, list[str]] = {}
    for i, row in enumerate(rows):
        name = row["name"].strip()
        filled = any(row[k].strip() for k in ("low", "high", "step", "choices"))
        if not name:
            if filled:
                problems[f"row{i}.name"] = ["give the parameter a name"]
            continue
        if name in space:
            problems[f"row{i}.name"] = [f"{name!r} is in the search space twice"]
            continue
        kind = row["type"] or "float"
        param: dict[str, Any] = {"type": kind}
        if kind == "categorical":
            param["choices"] = [
                number_or_text(c, "float") if _numeric(c) else c.strip()
                for c in row["choices"].split(",")
                if c.strip()
            ]
        else:
            for key in ("low", "high", "step"):
                if row[key].strip():
                    param[key] = number_or_text(row[key], kind)
            param["log"] = row["log"] == "on"
        space[name] = param
    return space, problems


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def row_errors(rows: list[dict[str, str]], errors: dict[str, list[str]]) -> list[dict[str, Any]]:
    """Each row's errors by column (``""``: the row as a whole), the API's keyed by the
    parameter's name (``search_space.lr.low``), the form's by the row (``row2.name``)."""
    found = []
    for i, row in enumerate(rows):
        name = row["name"].strip()
        mine: dict[str, list[str]] = {}
        for key, messages in errors.items():
            if key.startswith(f"row{i}."):
                mine.setdefault(key.split(".", 1)[1], []).extend(messages)
            elif name and (
                key == f"search_space.{name}" or key.startswith(f"search_space.{name}.")
            ):
                column = key[len(f"search_space.{name}") :].lstrip(".").split(".")[0]
                mine.setdefault(column, []).extend(messages)
        found.append(mine)
    return found


def hpo_form_context(
    form: dict[str, str], rows: list[dict[str, str]], errors: dict[str, list[str]]
) -> dict[str, Any]:
    rows = rows + [
        dict.fromkeys(("name", "type", "low", "high", "step", "choices", "log"), "")
        for _ in range(max(0, SPACE_ROWS - len(rows)))
    ]
    per_row = row_errors(rows, errors)
    shown = {k for k in errors if k.startswith("row")}
    shown |= {
        k
        for k in errors
        for r in rows
        if r["name"].strip()
        and (
            k == f"search_space.{r['name'].strip()}"
            or k.startswith(f"search_space.{r['name'].strip()}.")
        )
    }
    return {
        "form": form,
        "rows": list(zip(rows, per_row, strict=True)),
        "errors": errors,
        "shown": sorted(shown | set(HPO_FIELDS)),
        "methods": METHODS,
        "pruners": PRUNERS,
        "param_types": PARAM_TYPES,
    }


#: the form's fields -> where the API's errors about them are keyed
HPO_FIELDS = {
    "name": "name",
    "description": "description",
    "method": "method",
    "metric": "metric",
    "direction": "direction",
    "pruner": "pruner",
    "seed": "seed",
    "base_model_type": "base_model_type",
    "base_hyperparameters": "base_hyperparameters",
    "dataset_id": "dataset_id",
    "max_trials": "budget.max_trials",
    "max_epochs": "budget.max_epochs",
    "min_epochs": "budget.min_epochs",
    "max_duration_seconds": "budget.max_duration_seconds",
}


def rekey(errors: dict[str, list[str]]) -> dict[str, list[str]]:
    """The API's keys (``budget.max_trials``) as the form's fields (``max_trials``)."""
    back = {api_key: field for field, api_key in HPO_FIELDS.items()}
    out: dict[str, list[str]] = {}
    for key, messages in errors.items():
        if key == "budget":
            key = "max_trials"
        out.setdefault(back.get(key, key), []).extend(messages)
    return out


async def datasets_and_unread(api: UserApi) -> dict[str, Any]:
    """What every form page shows besides the form: the datasets a campaign may use, the badge."""
    found, unread = await asyncio.gather(api.get("/datasets", limit=100), unread_count(api))
    return {"datasets": found["items"], "unread": unread}


@router.get("/campaigns/hpo/new")
async def new_hpo(request: Request, state: StateDep, api: UserApiDep) -> Response:
    form = {"method": "random", "metric": "val_accuracy", "direction": "maximize", "pruner": "none"}
    return page(
        request,
        state.templates,
        "hpo_new.html",
        {**hpo_form_context(form, [], {}), **await datasets_and_unread(api)},
    )


@router.post("/campaigns/hpo", dependencies=[CsrfDep])
async def create_hpo(request: Request, state: StateDep, api: UserApiDep) -> Response:
    raw = await request.form()
    form = {k: str(raw.get(k) or "") for k in HPO_FIELDS}
    rows = space_rows(raw)[:MAX_SPACE_ROWS]
    space, errors = search_space(rows)
    budget: dict[str, Any] = {"max_trials": number_or_text(form["max_trials"], "int")}
    for key, kind in (("max_epochs", "int"), ("min_epochs", "int"), ("max_duration_seconds", "")):
        if form[key].strip():
            budget[key] = number_or_text(form[key], kind or "float")
    body: dict[str, Any] = {
        "name": form["name"],
        "method": form["method"],
        "metric": form["metric"] or "val_accuracy",
        "direction": form["direction"] or None,
        "pruner": form["pruner"] or None,
        "search_space": space,
        "budget": budget,
    }
    for key in ("description", "base_model_type", "dataset_id"):
        if form[key].strip():
            body[key] = form[key].strip()
    if form["seed"].strip():
        body["seed"] = number_or_text(form["seed"], "int")
    if form["base_hyperparameters"].strip():
        try:
            body["base_hyperparameters"] = json.loads(form["base_hyperparameters"])
        except ValueError as exc:
            errors["base_hyperparameters"] = [f"not JSON: {exc}"]
    created = None
    if not errors:
        try:
            created = await api.json("POST", "/hpo-campaigns", json=body)
        except ApiProblem as exc:
            if exc.status not in (409, 422):
                raise
            errors = rekey(field_errors(exc.problem))
    if created is None:
        return page(
            request,
            state.templates,
            "hpo_new.html",
            {**hpo_form_context(form, rows, errors), **await datasets_and_unread(api)},
            status_code=422,
        )
    return RedirectResponse(f"/campaigns/hpo/{created['id']}", status_code=303)


async def hpo_state(api: UserApi, campaign_id: uuid.UUID) -> dict[str, Any]:
    campaign, trials = await asyncio.gather(
        api.get(f"/hpo-campaigns/{campaign_id}"), api.get(f"/hpo-campaigns/{campaign_id}/trials")
    )
    return {"campaign": campaign, "trials": trials}


@router.get("/campaigns/hpo/{campaign_id}")
async def hpo(
    request: Request,
    state: StateDep,
    api: UserApiDep,
    campaign_id: uuid.UUID,
    error: Annotated[str, Query(max_length=2000)] = "",
) -> Response:
    found, unread = await asyncio.gather(hpo_state(api, campaign_id), unread_count(api))
    campaign = found["campaign"]
    params = list((campaign.get("search_space") or {}).keys())
    return page(
        request,
        state.templates,
        "hpo.html",
        {
            "c": campaign,
            "trials": found["trials"],
            "params": params,
            "state_json": json.dumps(found),
            "error": error[:300],
            "unread": unread,
        },
    )


@router.get("/console-api/hpo-campaigns/{campaign_id}")
async def hpo_json(api: UserApiDep, campaign_id: uuid.UUID) -> Response:
    return JSONResponse(await hpo_state(api, campaign_id))


@router.post("/campaigns/hpo/{campaign_id}/{action}", dependencies=[CsrfDep])
async def hpo_action(api: UserApiDep, campaign_id: uuid.UUID, action: str) -> Response:
    """``suggest`` (the next trial's pending experiment, for a training loop to pick up) and
    ``cancel``; the API's 409 (budget spent, campaign over) is shown on the page."""
    if action not in ("suggest", "cancel"):
        raise ApiProblem(404, {"title": "Not Found", "status": 404})
    try:
        await api.json("POST", f"/hpo-campaigns/{campaign_id}/{action}")
    except ApiProblem as exc:
        if exc.status not in (409, 422):
            raise
        message = str(exc.problem.get("detail") or exc.problem.get("title"))
        return RedirectResponse(
            f"/campaigns/hpo/{campaign_id}?error={quote(message)}", status_code=303
        )
    return RedirectResponse(f"/campaigns/hpo/{campaign_id}", status_code=303)


# --- NAS -------------------------------------------------------------------------------------

NAS_FIELDS = (
    "name",
    "dataset_id",
    "description",
    "search_algorithm",
    "num_trials",
    "max_epochs_per_trial",
    "search_space_config",
)


@router.get("/campaigns/nas/new")
async def new_nas(request: Request, state: StateDep, api: UserApiDep) -> Response:
    form = {"search_algorithm": "random", "num_trials": "20", "search_space_config": "{}"}
    return page(
        request,
        state.templates,
        "nas_new.html",
        {"form": form, "errors": {}, **await datasets_and_unread(api)},
    )


@router.post("/campaigns/nas", dependencies=[CsrfDep])
async def create_nas(request: Request, state: StateDep, api: UserApiDep) -> Response:
    raw = await request.form()
    form = {k: str(raw.get(k) or "") for k in NAS_FIELDS}
    errors: dict[str, list[str]] = {}
    body: dict[str, Any] = {
        "name": form["name"],
        "search_algorithm": form["search_algorithm"],
        "num_trials": number_or_text(form["num_trials"], "int"),
    }
    for key in ("description", "dataset_id"):
        if form[key].strip():
            body[key] = form[key].strip()
    if form["max_epochs_per_trial"].strip():
        body["max_epochs_per_trial"] = number_or_text(form["max_epochs_per_trial"], "int")
    if form["search_space_config"].strip():
        try:
            body["search_space_config"] = json.loads(form["search_space_config"])
        except ValueError as exc:
            errors["search_space_config"] = [f"not JSON: {exc}"]
    created = None
    if not errors:
        try:
            created = await api.json("POST", "/nas-campaigns", json=body)
        except ApiProblem as exc:
            if exc.status not in (409, 422):
                raise
            errors = field_errors(exc.problem)
    if created is None:
        return page(
            request,
            state.templates,
            "nas_new.html",
            {"form": form, "errors": errors, **await datasets_and_unread(api)},
            status_code=422,
        )
    return RedirectResponse(f"/campaigns/nas/{created['id']}", status_code=303)


async def nas_state(api: UserApi, campaign_id: uuid.UUID) -> dict[str, Any]:
    campaign = await api.get(f"/nas-campaigns/{campaign_id}")
    trials: list[dict[str, Any]] = []
    cursor = ""
    while len(trials) < MAX_NAS_TRIALS:
        listed = await api.get(f"/nas-campaigns/{campaign_id}/trials", limit=500, cursor=cursor)
        trials += listed["items"]
        cursor = listed.get("next_cursor") or ""
        if not cursor:
            break
    trials.sort(key=lambda t: int(t.get("trial_number") or 0))
    return {"campaign": campaign, "trials": trials}


@router.get("/campaigns/nas/{campaign_id}")
async def nas(
    request: Request, state: StateDep, api: UserApiDep, campaign_id: uuid.UUID
) -> Response:
    found, unread = await asyncio.gather(nas_state(api, campaign_id), unread_count(api))
    trials = [
        {
            **t,
            "architecture_json": json.dumps(t.get("architecture") or {}, indent=2, sort_keys=True),
        }
        for t in found["trials"]
    ]
    return page(
        request,
        state.templates,
        "nas.html",
        {
            "c": found["campaign"],
            "trials": trials,
            "state_json": json.dumps(found),
            "unread": unread,
        },
    )


@router.get("/console-api/nas-campaigns/{campaign_id}")
async def nas_json(api: UserApiDep, campaign_id: uuid.UUID) -> Response:
    return JSONResponse(await nas_state(api, campaign_id))
