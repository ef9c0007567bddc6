"""Webhooks: the user's endpoints (Slack, Teams or a generic signed POST), what each is sent,
its signing secret (shown once, on creation and on rotation), switching it on and off, a test
send, and its deliveries with every attempt: status, latency and the answer's body, with retry
and replay.

The webhooks service announces an endpoint's attempts once per short window
(``webhook.deliveries_updated``, not per attempt); on it an endpoint's open page asks for its
deliveries again (``static/js/webhook.js``, every few seconds only while its live stream is
down) and redraws them only when they changed.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from runyard.console.gateway import ApiProblem, UserApi
from runyard.console.pages.forms import user_error, with_unread
from runyard.console.render import page
from runyard.console.web import CsrfDep, SessionDep, StateDep, UserApiDep

router = APIRouter()

PROVIDERS = {"generic": "Generic (signed JSON)", "slack": "Slack", "teams": "Microsoft Teams"}
#: the event patterns the form offers; any other pattern can be typed
EVENT_CHOICES = [
    ("*", "Every event"),
    ("experiment.*", "Experiments: every lifecycle event"),
    ("experiment.completed", "Experiment completed"),
    ("experiment.failed", "Experiment failed"),
    ("experiment.stalled", "Experiment stalled"),
    ("hpo_campaign.*", "HPO campaigns"),
    ("nas_campaign.*", "NAS campaigns"),
    ("dataset.*", "Datasets"),
    ("dataset_generation.*", "Dataset generation jobs"),
    ("dataset_import.*", "Dataset import jobs"),
    ("project.*", "Projects"),
    ("artifact.*", "Artifacts"),
    ("login.*", "Sign-ins"),
    ("account.locked", "Account locked"),
    ("password.changed", "Password changed"),
    ("two_factor.*", "Two-factor changes"),
    ("api_key.*", "API keys created, revoked, used"),
    ("webhook.endpoint_disabled", "An endpoint was disabled"),
]
DELIVERIES_SHOWN = 50
ATTEMPTS_SHOWN = 200
Text = Annotated[str, Form(max_length=2048)]


def chosen_events(choices: list[str], other: str) -> list[str]:
    typed = [p.strip() for p in other.replace("\n", ",").split(",") if p.strip()]
    return list(dict.fromkeys([*choices, *typed]))


async def list_page(
    request: Request,
    state: StateDep,
    api: UserApi,
    *,
    created: dict[str, Any] | None = None,
    form: dict[str, Any] | None = None,
    error: str = "",
    status: int = 200,
) -> Response:
    found, unread = await with_unread(api, api.get("/webhooks", limit=100))
    context = {
        "items": found["items"],
        "created": created,
        "form": form or {"provider_type": "generic", "events": ["experiment.*"]},
        "providers": PROVIDERS,
        "event_choices": EVENT_CHOICES,
        "error": error,
        "unread": unread,
    }
    return page(request, state.templates, "webhooks.html", context, status_code=status)


@router.get("/webhooks")
async def webhooks(request: Request, state: StateDep, api: UserApiDep) -> Response:
    return await list_page(request, state, api)


@router.post("/webhooks", dependencies=[CsrfDep])
async def create(
    request: Request,
    state: StateDep,
    api: UserApiDep,
    name: Annotated[str, Form(max_length=255)],
    url: Text,
    provider_type: Annotated[str, Form(max_length=20)] = "generic",
    events: Annotated[list[str] | None, Form()] = None,
    other_events: Text = "",
    description: Annotated[str, Form(max_length=10000)] = "",
) -> Response:
    """The answer shows the new endpoint's secret: the only time anyone sees it."""
    enabled = chosen_events(events or [], other_events)
    body = {
        "name": name.strip(),
        "url": url.strip(),
        "provider_type": provider_type,
        "enabled_events": enabled,
        "description": description.strip() or None,
    }
    try:
        created = await api.json("POST", "/webhooks", json=body)
    except ApiProblem as exc:
        error = user_error(exc)
        form = {**body, "events": enabled, "other_events": other_events}
        return await list_page(request, state, api, form=form, error=error, status=exc.status)
    return await list_page(request, state, api, created=created)


def attempts_by_delivery(
    attempts: list[dict[str, Any]],
) -> tuple[dict[str, list[dict[str, Any]]], list[dict[str, Any]]]:
    """Each delivery's attempts, oldest first, and the test sends (which belong to none)."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    tests = []
    for attempt in attempts:
        if attempt.get("delivery_id"):
            grouped.setdefault(str(attempt["delivery_id"]), []).append(attempt)
        else:
            tests.append(attempt)
    for found in grouped.values():
        found.sort(key=lambda a: (a.get("attempt_number") or 0, a.get("sent_at") or ""))
    return grouped, tests


async def deliveries_context(api: UserApi, webhook_id: uuid.UUID) -> dict[str, Any]:
    deliveries, attempts = await asyncio.gather(
        api.get(f"/webhooks/{webhook_id}/deliveries", limit=DELIVERIES_SHOWN),
        api.get(f"/webhooks/{webhook_id}/attempts", limit=ATTEMPTS_SHOWN),
    )
    grouped, tests = attempts_by_delivery(attempts["items"])
    rows = [{**d, "attempts": grouped.get(str(d["id"]), [])} for d in deliveries["items"]]
    shape = [(d["id"], d["status"], d["attempt_count"]) for d in rows]
    shape += [(a["id"], a["status"], 0) for a in attempts["items"]]
    fingerprint = hashlib.sha256(json.dumps(shape, default=str).encode()).hexdigest()[:16]
    return {"deliveries": rows, "tests": tests[:10], "fingerprint": fingerprint}


async def detail_page(
    request: Request,
    state: StateDep,
    api: UserApi,
    webhook_id: uuid.UUID,
    *,
    secret: str = "",
    tested: dict[str, Any] | None = None,
    notice: str = "",
    error: str = "",
    status: int = 200,
) -> Response:
    (webhook, deliveries), unread = await with_unread(
        api, asyncio.gather(api.get(f"/webhooks/{webhook_id}"), deliveries_context(api, webhook_id))
    )
    since = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    context = {
        "w": webhook,
        **deliveries,
        "providers": PROVIDERS,
        "secret": secret,
        "tested": tested,
        "notice": notice,
        "error": error,
        "replay_since": since,
        "unread": unread,
    }
    return page(request, state.templates, "webhook.html", context, status_code=status)


NOTICES = {
    "enabled": "The endpoint is on: new events are delivered to it.",
    "disabled": "The endpoint is off: no events are delivered until you switch it on.",
    "retry": "The delivery is queued to be sent again now.",
}


@router.get("/webhooks/{webhook_id}")
async def webhook(
    request: Request, state: StateDep, api: UserApiDep, webhook_id: uuid.UUID, done: str = ""
) -> Response:
    return await detail_page(request, state, api, webhook_id, notice=NOTICES.get(done, ""))


@router.get("/console-api/webhooks/{webhook_id}/deliveries")
async def deliveries_fragment(
    state: StateDep, api: UserApiDep, session: SessionDep, webhook_id: uuid.UUID
) -> Response:
    """The deliveries section as HTML (the page swaps it in when its fingerprint changed)."""
    context = await deliveries_context(api, webhook_id)
    template = state.templates.get_template("_deliveries.html")
    html = template.render({**context, "w": {"id": str(webhook_id)}, "csrf_token": session.csrf})
    return JSONResponse({"fingerprint": context["fingerprint"], "html": html})


@router.post("/webhooks/{webhook_id}/active", dependencies=[CsrfDep])
async def set_active(
    api: UserApiDep, webhook_id: uuid.UUID, active: Annotated[str, Form(max_length=5)]
) -> Response:
    on = active == "true"
    await api.json("PATCH", f"/webhooks/{webhook_id}", json={"is_active": on})
    done = "enabled" if on else "disabled"
    return RedirectResponse(f"/webhooks/{webhook_id}?done={done}", status_code=303)


@router.post("/webhooks/{webhook_id}/rotate-secret", dependencies=[CsrfDep])
async def rotate(
    request: Request, state: StateDep, api: UserApiDep, webhook_id: uuid.UUID
) -> Response:
    rotated = await api.json("POST", f"/webhooks/{webhook_id}/rotate-secret")
    return await detail_page(request, state, api, webhook_id, secret=rotated["secret"])


@router.post("/webhooks/{webhook_id}/test", dependencies=[CsrfDep])
async def send_test(
    request: Request, state: StateDep, api: UserApiDep, webhook_id: uuid.UUID
) -> Response:
    result = await api.json("POST", f"/webhooks/{webhook_id}/test")
    return await detail_page(request, state, api, webhook_id, tested=result)


@router.post("/webhooks/{webhook_id}/deliveries/{delivery_id}/retry", dependencies=[CsrfDep])
async def retry(api: UserApiDep, webhook_id: uuid.UUID, delivery_id: uuid.UUID) -> Response:
    await api.json("POST", f"/webhooks/{webhook_id}/deliveries/{delivery_id}/retry")
    return RedirectResponse(f"/webhooks/{webhook_id}?done=retry", status_code=303)


@router.post("/webhooks/{webhook_id}/replay", dependencies=[CsrfDep])
async def replay(
    request: Request,
    state: StateDep,
    api: UserApiDep,
    webhook_id: uuid.UUID,
    since: Annotated[str, Form(max_length=40)],
) -> Response:
    """``since`` comes from a ``datetime-local`` field, read as UTC (the page says so)."""
    try:
        moment = datetime.fromisoformat(since).replace(tzinfo=UTC)
    except ValueError:
        error = "Give the start of the replay as a date and time."
        return await detail_page(request, state, api, webhook_id, error=error, status=400)
    try:
        result = await api.json(
            "POST", f"/webhooks/{webhook_id}/replay", json={"since": moment.isoformat()}
        )
    except ApiProblem as exc:
        error = user_error(exc)
        return await detail_page(request, state, api, webhook_id, error=error, status=exc.status)
    notice = f"{result['queued']} failed deliveries queued again."
    return await detail_page(request, state, api, webhook_id, notice=notice)


@router.post("/webhooks/{webhook_id}/delete", dependencies=[CsrfDep])
async def delete(api: UserApiDep, webhook_id: uuid.UUID) -> Response:
    await api.json("DELETE", f"/webhooks/{webhook_id}")
    return RedirectResponse("/webhooks", status_code=303)
