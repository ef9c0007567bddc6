"""The experiments table: search with the filter language and full text, sorting, keyset pages,
saved searches, chosen hyperparameter and metric columns."""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse, Response

from runyard.console.gateway import ApiProblem, UserApi
from runyard.console.render import page
from runyard.console.web import CsrfDep, SessionDep, StateDep, UserApiDep, set_cookie

router = APIRouter()

COLUMNS_COOKIE = "ry_columns"
#: sortable built-in columns: header -> order_by key
SORTABLE = {
    "name": "name",
    "status": "status",
    "model_type": "model_type",
    "epochs": "total_epochs",
    "duration": "duration_seconds",
    "updated": "updated_at",
    "created": "created_at",
}
COLUMN = re.compile(r"^(params|metrics)\.[^`\n,]{1,100}$")
MAX_EXTRA_COLUMNS = 12
PAGE_SIZE = 50


def parse_columns(value: str | None) -> list[str]:
    """``params.lr,metrics.f1``: the extra columns, each ``params.<key>`` or ``metrics.<key>``."""
    found = [c.strip() for c in (value or "").split(",") if c.strip()]
    return [c for c in dict.fromkeys(found) if COLUMN.match(c)][:MAX_EXTRA_COLUMNS]


def extra_value(experiment: dict[str, Any], column: str) -> Any:
    namespace, key = column.split(".", 1)
    source = experiment.get("hyperparameters" if namespace == "params" else "metrics") or {}
    return source.get(key)


def filter_error(problem: dict[str, Any], text: str) -> dict[str, Any]:
    """Where the API says the filter is wrong: the message and the text split at the position."""
    position = problem.get("position")
    if not isinstance(position, int) or not 0 <= position <= len(text):
        position = None
    return {
        "title": problem.get("title") or "Invalid filter",
        "detail": problem.get("detail") or "",
        "column": problem.get("column"),
        "before": text[:position] if position is not None else text,
        "at": text[position : position + 1] if position is not None else "",
        "after": text[position + 1 :] if position is not None else "",
        "param": "order_by" if problem.get("title") == "Invalid order_by" else "filter",
    }


async def dataset_names(api: UserApi, ids: set[str]) -> dict[str, str]:
    async def one(dataset_id: str) -> tuple[str, str]:
        try:
            found = await api.get(f"/datasets/{dataset_id}")
            return dataset_id, str(found.get("name") or dataset_id[:8])
        except ApiProblem:
            return dataset_id, dataset_id[:8]

    return dict(await asyncio.gather(*(one(i) for i in sorted(ids)[:PAGE_SIZE])))


async def unread_count(api: UserApi) -> int | None:
    try:
        found = await api.get("/notifications/inbox/unread-count")
    except ApiProblem:
        return None
    count = found.get("unread_count") if isinstance(found, dict) else None
    return count if isinstance(count, int) else None


@router.get("/")
async def start(_: SessionDep) -> Response:
    return RedirectResponse("/experiments", status_code=303)


@router.get("/experiments")
async def experiments(
    request: Request,
    state: StateDep,
    api: UserApiDep,
    filter: Annotated[str, Query(max_length=4000)] = "",
    q: Annotated[str, Query(max_length=500)] = "",
    order_by: Annotated[str, Query(max_length=200)] = "",
    status: Annotated[str, Query(max_length=20)] = "",
    cursor: Annotated[str, Query(max_length=2000)] = "",
    cols: Annotated[str | None, Query(max_length=2000)] = None,
) -> Response:
    columns = parse_columns(cols if cols is not None else request.cookies.get(COLUMNS_COOKIE))
    search = {"filter": filter, "q": q, "order_by": order_by, "status": status}
    error = None
    items: list[dict[str, Any]] = []
    next_cursor = None
    try:
        found, saved, unread = await asyncio.gather(
            api.get("/experiments", limit=PAGE_SIZE, cursor=cursor, **search),
            api.get("/saved-searches", limit=100),
            unread_count(api),
        )
        items, next_cursor = found["items"], found.get("next_cursor")
    except ApiProblem as exc:
        if exc.status not in (400, 422):
            raise
        wrong = order_by if exc.problem.get("title") == "Invalid order_by" else filter
        error = filter_error(exc.problem, wrong)
        saved = await api.get("/saved-searches", limit=100)
        unread = await unread_count(api)
    query = {k: v for k, v in search.items() if v}
    datasets = await dataset_names(
        api, {str(e["dataset_id"]) for e in items if e.get("dataset_id")}
    )
    rows = [
        {
            **e,
            "dataset_name": datasets.get(str(e.get("dataset_id")), ""),
            "extra": [extra_value(e, c) for c in columns],
        }
        for e in items
    ]
    next_url = None
    if next_cursor:
        next_url = f"/experiments?{urlencode({**query, 'cursor': next_cursor})}"
    response = page(
        request,
        state.templates,
        "experiments.html",
        {
            "rows": rows,
            "columns": columns,
            "search": search,
            "error": error,
            "saved": saved.get("items", []),
            "unread": unread,
            "next_url": next_url,
            "first_url": f"/experiments?{urlencode(query)}" if cursor else None,
            "sort_url": lambda key: sort_url(query, key),
            "sorted_by": order_by or "-created_at",
            "searching": bool(filter or q or status),
        },
        status_code=400 if error else 200,
    )
    if cols is not None:
        set_cookie(response, state.settings, COLUMNS_COOKIE, ",".join(columns), max_age=365 * 86400)
    return response


def sort_url(query: dict[str, str], key: str) -> str:
    """The header link: ascending first, descending when already ascending."""
    current = query.get("order_by", "-created_at")
    order = f"-{key}" if current == key else key
    return f"/experiments?{urlencode({**query, 'order_by': order})}"


@router.post("/saved-searches", dependencies=[CsrfDep])
async def save_search(
    api: UserApiDep,
    name: Annotated[str, Form(min_length=1, max_length=255)],
    filter: Annotated[str, Form(max_length=4000)] = "",
    q: Annotated[str, Form(max_length=500)] = "",
    order_by: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    body = {"name": name, "query": filter, "q": q or None, "order_by": order_by or None}
    await api.json("POST", "/saved-searches", json=body)
    query = {k: v for k, v in {"filter": filter, "q": q, "order_by": order_by}.items() if v}
    return RedirectResponse(f"/experiments?{urlencode(query)}", status_code=303)


@router.post("/saved-searches/{search_id}/delete", dependencies=[CsrfDep])
async def delete_search(api: UserApiDep, search_id: uuid.UUID) -> Response:
    await api.json("DELETE", f"/saved-searches/{search_id}")
    return RedirectResponse("/experiments", status_code=303)
