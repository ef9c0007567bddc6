"""Alerts: the alerts the user's rules fired and cleared (newest first, live from
``alert.triggered`` / ``alert.resolved``), and the rules themselves: list, a form for every kind
(threshold, not finite, plateau, divergence, overfitting gap, lifecycle) and scope (all
experiments, a project, a filter expression, one experiment) with the API's 422 errors beside the
field they name, switching a rule on and off, deleting it (after a confirmation page), and a
backtest that shows where it would have fired over the stored history. The experiment page
shows its own alerts (``experiment_alerts``)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse, Response

from runyard.console.gateway import ApiProblem, UserApi
from runyard.console.pages.campaigns import number_or_text
from runyard.console.pages.experiments import unread_count
from runyard.console.pages.forms import checked
from runyard.console.pages.projects import field_errors
from runyard.console.render import page
from runyard.console.web import CsrfDep, StateDep, UserApiDep

router = APIRouter()

PAGE_SIZE = 50
#: the alerts an experiment's panel shows
PANEL_SIZE = 20
KINDS = {
    "threshold": "Threshold: a metric crosses a value",
    "not_finite": "Not finite: a metric becomes NaN or infinite",
    "plateau": "Plateau: no improvement for N epochs",
    "divergence": "Divergence: a metric rose by more than x % over N epochs",
    "gap": "Overfitting gap: validation minus training exceeds d",
    "lifecycle": "Lifecycle: failed, stalled, or completed (optionally below/above a value)",
}
SCOPES = {
    "all": "All my experiments",
    "project": "A project",
    "filter": "Experiments matching a filter",
    "experiment": "One experiment",
}
SEVERITIES = ("info", "warning", "critical")
OPERATORS = (">", ">=", "<", "<=")
#: the condition's fields of each kind (the form shows those of the chosen kind)
KIND_FIELDS: dict[str, tuple[str, ...]] = {
    "threshold": ("metric", "op", "value"),
    "not_finite": ("metric",),
    "plateau": ("metric", "epochs", "min_delta", "mode"),
    "divergence": ("metric", "epochs", "percent"),
    "gap": ("val_metric", "train_metric", "direction", "gap"),
    "lifecycle": ("event", "metric", "op", "value"),
}
CONDITION_FIELDS = tuple(dict.fromkeys(f for fs in KIND_FIELDS.values() for f in fs))
SCOPE_FIELDS = {"project": "project_id", "filter": "filter", "experiment": "experiment_id"}
#: numbers of a condition, as the API wants them (text that is no number goes as typed, so
#: that the API's message about it lands at the field)
NUMBERS = {"value": "float", "epochs": "int", "min_delta": "float", "percent": "float"}
NUMBERS |= {"gap": "float"}
RULE_FIELDS = ("name", "kind", "severity", "cooldown_s", "scope_type", *CONDITION_FIELDS)
FORM_FIELDS = (*RULE_FIELDS, "project_id", "filter", "experiment_id")
Text = Annotated[str, Form(max_length=2000)]


def blank_form(**given: str) -> dict[str, str]:
    form = dict.fromkeys(FORM_FIELDS, "")
    form |= {"kind": "threshold", "severity": "warning", "cooldown_s": "0", "scope_type": "all"}
    form |= {"op": ">=", "mode": "", "direction": "val_minus_train", "event": "failed"}
    form |= {"val_metric": "val_loss", "train_metric": "train_loss", "enabled": "on"}
    return form | {k: v for k, v in given.items() if v}


def rule_body(form: dict[str, str]) -> dict[str, Any]:
    """The API's rule from the form: the chosen kind's fields only (blank optional ones left
    out), the chosen scope."""
    kind = form.get("kind") or "threshold"
    condition: dict[str, Any] = {"kind": kind}
    for key in KIND_FIELDS.get(kind, ()):
        value = (form.get(key) or "").strip()
        if not value:
            continue
        condition[key] = number_or_text(value, NUMBERS[key]) if key in NUMBERS else value
    if kind == "lifecycle" and "metric" not in condition and "value" not in condition:
        condition.pop("op", None)  # the operator alone (the form's default) says nothing
    scope_type = form.get("scope_type") or "all"
    scope: dict[str, Any] = {"type": scope_type}
    if scope_type in SCOPE_FIELDS:
        scope[SCOPE_FIELDS[scope_type]] = (form.get(SCOPE_FIELDS[scope_type]) or "").strip()
    cooldown = (form.get("cooldown_s") or "").strip()
    return {
        "name": (form.get("name") or "").strip(),
        "condition": condition,
        "scope": scope,
        "severity": form.get("severity") or "warning",
        "cooldown_s": number_or_text(cooldown, "int") if cooldown else 0,
        "rearm": checked(form.get("rearm")),
        "enabled": checked(form.get("enabled")),
    }


def form_of(rule: dict[str, Any]) -> dict[str, str]:
    """An API rule as the form's fields (the edit form)."""
    condition = dict(rule.get("condition") or {})
    scope = dict(rule.get("scope") or {})
    form = blank_form()
    form |= {k: "" if v is None else str(v) for k, v in condition.items() if k in FORM_FIELDS}
    form |= {
        "name": str(rule.get("name") or ""),
        "kind": str(condition.get("kind") or "threshold"),
        "severity": str(rule.get("severity") or "warning"),
        "cooldown_s": str(rule.get("cooldown_s") or 0),
        "scope_type": str(scope.get("type") or "all"),
        "rearm": "on" if rule.get("rearm") else "",
        "enabled": "on" if rule.get("enabled") else "",
    }
    for key in SCOPE_FIELDS.values():
        if scope.get(key) is not None:
            form[key] = str(scope[key])
    return form


def form_errors(problem: dict[str, Any]) -> dict[str, list[str]]:
    """The API's errors keyed by the form's fields: ``condition.divergence.percent`` is
    ``percent``, ``scope.project.project_id`` is ``project_id``; a condition or scope as a whole
    (an unknown kind, fields that only go together) is ``kind`` or ``scope_type``."""
    out: dict[str, list[str]] = {}
    for key, messages in field_errors(problem).items():
        parts = key.split(".") if key else []
        if parts[:1] == ["condition"]:
            rest = parts[2:] if parts[1:2] and parts[1] in KINDS else parts[1:]
            target = rest[0] if rest and rest[0] in CONDITION_FIELDS else "kind"
        elif parts[:1] == ["scope"]:
            rest = parts[2:] if parts[1:2] and parts[1] in SCOPES else parts[1:]
            fields = set(SCOPE_FIELDS.values())
            target = rest[0] if rest and rest[0] in fields else "scope_type"
        elif parts and parts[0] in ("name", "severity", "cooldown_s", "rearm", "enabled"):
            target = parts[0]
        else:
            target = key
        out.setdefault(target, []).extend(messages)
    return out


def describe(rule: dict[str, Any]) -> str:
    """A rule's condition in one line (``val_accuracy >= 0.95``)."""
    c = rule.get("condition") or {}
    kind = c.get("kind")
    if kind == "threshold":
        return f"{c.get('metric')} {c.get('op')} {c.get('value')}"
    if kind == "not_finite":
        return f"{c.get('metric')} is NaN or infinite"
    if kind == "plateau":
        mode = c.get("mode") or "best_mode"
        delta = c.get("min_delta") or 0
        return f"{c.get('metric')} no better by {delta} for {c.get('epochs')} epochs ({mode})"
    if kind == "divergence":
        return f"{c.get('metric')} rose > {c.get('percent')} % over {c.get('epochs')} epochs"
    if kind == "gap":
        first, second = c.get("val_metric"), c.get("train_metric")
        if c.get("direction") == "train_minus_val":
            first, second = second, first
        return f"{first} - {second} > {c.get('gap')}"
    if kind == "lifecycle":
        text = f"experiment {c.get('event')}"
        if c.get("metric"):
            text += f" with {c.get('metric')} {c.get('op')} {c.get('value')}"
        return text
    return str(kind)


def describe_scope(rule: dict[str, Any], projects: dict[str, str]) -> str:
    s = rule.get("scope") or {}
    kind = s.get("type")
    if kind == "project":
        return f"project {projects.get(str(s.get('project_id')), s.get('project_id'))}"
    if kind == "filter":
        return f"filter: {s.get('filter')}"
    if kind == "experiment":
        return f"experiment {s.get('experiment_id')}"
    return "all my experiments"


async def experiment_alerts(api: UserApi, experiment_id: uuid.UUID | str) -> list[dict[str, Any]]:
    """The newest alerts of one experiment (the experiment page's panel); none when the API
    does not answer them."""
    try:
        found = await api.get("/alerts", experiment_id=str(experiment_id), limit=PANEL_SIZE)
    except ApiProblem as exc:
        if exc.status >= 500 or exc.status in (401,):
            raise
        return []
    return list(found.get("items") or [])


@router.get("/alerts")
async def alerts(
    request: Request,
    state: StateDep,
    api: UserApiDep,
    experiment_id: uuid.UUID | None = None,
    rule_id: uuid.UUID | None = None,
    status: Literal["triggered", "resolved", ""] = "",
    cursor: Annotated[str, Query(max_length=500)] = "",
) -> Response:
    found, unread = await asyncio.gather(
        api.get(
            "/alerts",
            experiment_id=experiment_id,
            rule_id=rule_id,
            status=status,
            cursor=cursor,
            limit=PAGE_SIZE,
        ),
        unread_count(api),
    )
    context = {
        "items": found["items"],
        "next_cursor": found.get("next_cursor"),
        "experiment_id": str(experiment_id or ""),
        "rule_id": str(rule_id or ""),
        "status": status,
        "filtered": bool(experiment_id or rule_id or status or cursor),
        "unread": unread,
    }
    return page(request, state.templates, "alerts.html", context)


async def projects_by_id(api: UserApi) -> dict[str, str]:
    try:
        found = await api.get("/projects", limit=100)
    except ApiProblem:
        return {}
    return {str(p["id"]): str(p["name"]) for p in found.get("items") or []}


NOTICES = {
    "enabled": "The rule is on: it watches epochs logged from now on.",
    "disabled": "The rule is off: it fires no alerts until you switch it on.",
    "deleted": "The rule and its alerts are deleted.",
    "created": "The rule is created: it watches epochs logged from now on.",
    "saved": "The rule is saved.",
}


@router.get("/alerts/rules")
async def rules(request: Request, state: StateDep, api: UserApiDep, done: str = "") -> Response:
    found, projects, unread = await asyncio.gather(
        api.get("/alert-rules", limit=100), projects_by_id(api), unread_count(api)
    )
    items = [
        {**r, "describe": describe(r), "where": describe_scope(r, projects)} for r in found["items"]
    ]
    context = {"items": items, "kinds": KINDS, "notice": NOTICES.get(done, ""), "unread": unread}
    return page(request, state.templates, "alert_rules.html", context)


async def form_page(
    request: Request,
    state: StateDep,
    api: UserApi,
    *,
    form: dict[str, str],
    errors: dict[str, list[str]],
    rule_id: str = "",
    status: int = 200,
) -> Response:
    projects, unread = await asyncio.gather(projects_by_id(api), unread_count(api))
    shown = {*FORM_FIELDS, "rearm", "enabled"}
    context = {
        "form": form,
        "errors": errors,
        "shown": sorted(shown),
        "rule_id": rule_id,
        "kinds": KINDS,
        "kind_fields": {k: " ".join(v) for k, v in KIND_FIELDS.items()},
        "field_kinds": {
            f: " ".join(k for k, fs in KIND_FIELDS.items() if f in fs) for f in CONDITION_FIELDS
        },
        "scopes": SCOPES,
        "severities": SEVERITIES,
        "operators": OPERATORS,
        "projects": projects,
        "unread": unread,
    }
    return page(request, state.templates, "alert_rule_form.html", context, status_code=status)


@router.get("/alerts/rules/new")
async def new_rule(
    request: Request,
    state: StateDep,
    api: UserApiDep,
    experiment_id: uuid.UUID | None = None,
) -> Response:
    """``?experiment_id=``: a rule for that experiment (the experiment page links here)."""
    form = blank_form()
    if experiment_id is not None:
        form |= {"scope_type": "experiment", "experiment_id": str(experiment_id)}
    return await form_page(request, state, api, form=form, errors={})


async def submitted(request: Request) -> dict[str, str]:
    raw = await request.form()
    form = {k: str(raw.get(k) or "")[:2000] for k in (*FORM_FIELDS, "rearm", "enabled")}
    return form


@router.post("/alerts/rules", dependencies=[CsrfDep])
async def create_rule(request: Request, state: StateDep, api: UserApiDep) -> Response:
    form = await submitted(request)
    try:
        await api.json("POST", "/alert-rules", json=rule_body(form))
    except ApiProblem as exc:
        if exc.status not in (400, 409, 422):
            raise
        errors = form_errors(exc.problem)
        return await form_page(request, state, api, form=form, errors=errors, status=exc.status)
    return RedirectResponse("/alerts/rules?done=created", status_code=303)


@router.get("/alerts/rules/{rule_id}")
async def edit_rule(
    request: Request, state: StateDep, api: UserApiDep, rule_id: uuid.UUID
) -> Response:
    rule = await api.get(f"/alert-rules/{rule_id}")
    return await form_page(request, state, api, form=form_of(rule), errors={}, rule_id=rule["id"])


@router.post("/alerts/rules/{rule_id}", dependencies=[CsrfDep])
async def update_rule(
    request: Request, state: StateDep, api: UserApiDep, rule_id: uuid.UUID
) -> Response:
    form = await submitted(request)
    try:
        await api.json("PATCH", f"/alert-rules/{rule_id}", json=rule_body(form))
    except ApiProblem as exc:
        if exc.status not in (400, 409, 422):
            raise
        errors = form_errors(exc.problem)
        return await form_page(
            request, state, api, form=form, errors=errors, rule_id=str(rule_id), status=exc.status
        )
    return RedirectResponse("/alerts/rules?done=saved", status_code=303)


@router.post("/alerts/rules/{rule_id}/enabled", dependencies=[CsrfDep])
async def set_enabled(
    api: UserApiDep, rule_id: uuid.UUID, enabled: Annotated[str, Form(max_length=5)]
) -> Response:
    on = enabled == "true"
    await api.json("PATCH", f"/alert-rules/{rule_id}", json={"enabled": on})
    return RedirectResponse(f"/alerts/rules?done={'enabled' if on else 'disabled'}", 303)


@router.get("/alerts/rules/{rule_id}/delete")
async def confirm_delete(
    request: Request, state: StateDep, api: UserApiDep, rule_id: uuid.UUID
) -> Response:
    """The confirmation step before a rule and its alerts go (a page, so that it works without
    JavaScript; its form posts to the route below)."""
    rule, projects, unread = await asyncio.gather(
        api.get(f"/alert-rules/{rule_id}"), projects_by_id(api), unread_count(api)
    )
    context = {
        "rule": {**rule, "describe": describe(rule), "where": describe_scope(rule, projects)},
        "unread": unread,
    }
    return page(request, state.templates, "alert_delete.html", context)


@router.post("/alerts/rules/{rule_id}/delete", dependencies=[CsrfDep])
async def delete_rule(api: UserApiDep, rule_id: uuid.UUID) -> Response:
    await api.json("DELETE", f"/alert-rules/{rule_id}")
    return RedirectResponse("/alerts/rules?done=deleted", status_code=303)


@router.post("/alerts/rules/{rule_id}/backtest", dependencies=[CsrfDep])
async def backtest(
    request: Request,
    state: StateDep,
    api: UserApiDep,
    rule_id: uuid.UUID,
    max_experiments: Annotated[str, Form(max_length=10)] = "100",
) -> Response:
    """Where the rule would have fired over the stored history (stores and sends nothing)."""
    rule, unread = await asyncio.gather(api.get(f"/alert-rules/{rule_id}"), unread_count(api))
    error = ""
    result = None
    body = {"max_experiments": number_or_text(max_experiments or "100", "int")}
    try:
        result = await api.json("POST", f"/alert-rules/{rule_id}/backtest", json=body)
    except ApiProblem as exc:
        if exc.status not in (400, 409, 422):
            raise
        error = "; ".join(m for ms in field_errors(exc.problem).values() for m in ms)
    context = {
        "rule": {**rule, "describe": describe(rule)},
        "result": result,
        "error": error,
        "max_experiments": max_experiments,
        "unread": unread,
    }
    status = 200 if result is not None else 422
    return page(request, state.templates, "alert_backtest.html", context, status_code=status)
