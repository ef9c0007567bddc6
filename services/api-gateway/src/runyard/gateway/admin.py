"""Admin endpoints served by the gateway itself: request logs, metric summaries, audit trail."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from runyard.gateway import repository
from runyard.gateway.api import gateway_state, identify, limit_caller
from runyard.gateway.schemas import AuditPage, MetricsPage, RequestLogPage
from runyard.shared.http import ProblemError
from runyard.shared.identity import Principal
from runyard.shared.runtime import db_session

ADMIN_PREFIX = "/api/v1/admin"


async def require_admin(request: Request, response: Response) -> Principal:
    state = gateway_state(request)
    request.state.service = "gateway"
    principal = await identify(request, state, service="admin")
    decision = limit_caller(request, state, principal)
    if decision is not None:
        response.headers.update(decision.headers())
    if principal.role != "admin":
        raise ProblemError(403, "Forbidden", "Only administrators may read this.")
    return principal


AdminDep = Annotated[Principal, Depends(require_admin)]
SessionDep = Annotated[AsyncSession, Depends(db_session)]
Limit = Annotated[int, Query(ge=1, le=500, description="Page size (default 50, max 500).")]
Cursor = Annotated[
    str | None, Query(max_length=512, description="`next_cursor` of the previous page.")
]
Since = Annotated[datetime | None, Query(description="From this time (inclusive).")]
#: Free-text filters: bounded, and no NUL (PostgreSQL text cannot hold it).
Text = Annotated[str | None, Query(max_length=256, pattern=r"^[^\x00]*$")]
Until = Annotated[datetime | None, Query(description="Before this time.")]

router = APIRouter(prefix=ADMIN_PREFIX, tags=["admin"])


@router.get("/request-logs", response_model=RequestLogPage)
async def request_logs(
    _: AdminDep,
    session: SessionDep,
    limit: Limit = 50,
    cursor: Cursor = None,
    method: Text = None,
    status: Annotated[int | None, Query(ge=100, le=599)] = None,
    errors_only: bool = False,
    service: Text = None,
    path_prefix: Annotated[str | None, Query(max_length=2048, pattern=r"^[^\x00]*$")] = None,
    user_id: uuid.UUID | None = None,
    api_key_id: uuid.UUID | None = None,
    request_id: Text = None,
    since: Since = None,
    until: Until = None,
) -> RequestLogPage:
    """Requests through the gateway, newest first (one row per request, written in batches)."""
    page = await repository.list_request_logs(
        session,
        limit=limit,
        cursor=cursor,
        method=method,
        status=status,
        errors_only=errors_only,
        service=service,
        path_prefix=path_prefix,
        user_id=user_id,
        api_key_id=api_key_id,
        request_id=request_id,
        since=since,
        until=until,
    )
    return RequestLogPage.model_validate({"items": page.rows, "next_cursor": page.next_cursor})


@router.get("/metrics", response_model=MetricsPage)
async def metrics(
    _: AdminDep,
    session: SessionDep,
    limit: Limit = 50,
    cursor: Cursor = None,
    aggregation: Literal["minute", "hour"] = "minute",
    endpoint: Annotated[
        str | None,
        Query(
            max_length=512,
            pattern=r"^[^\x00]*$",
            description="A route such as `/api/v1/experiments/{id}`; `*` for all requests.",
        ),
    ] = None,
    method: Text = None,
    since: Since = None,
    until: Until = None,
) -> MetricsPage:
    """Per-minute or per-hour summaries (requests, errors, error rate, rps, p50/p95/p99 latency)
    per endpoint, plus one `*` row per period for all requests; newest period first."""
    page = await repository.list_metrics(
        session,
        limit=limit,
        cursor=cursor,
        aggregation=aggregation,
        endpoint=endpoint,
        method=method,
        since=since,
        until=until,
    )
    return MetricsPage.model_validate({"items": page.rows, "next_cursor": page.next_cursor})


@router.get("/audit-log", response_model=AuditPage)
async def audit_log(
    _: AdminDep,
    session: SessionDep,
    limit: Limit = 50,
    cursor: Cursor = None,
    user_id: uuid.UUID | None = None,
    action: Annotated[
        str | None,
        Query(
            max_length=600,
            pattern=r"^[^\x00]*$",
            description="Prefix of `<METHOD> <route>`, e.g. `DELETE`.",
        ),
    ] = None,
    status: Literal["success", "failure"] | None = None,
    since: Since = None,
    until: Until = None,
) -> AuditPage:
    """State-changing requests by identified users (who, what, result), newest first."""
    page = await repository.list_audit_entries(
        session,
        limit=limit,
        cursor=cursor,
        user_id=user_id,
        action=action,
        status=status,
        since=since,
        until=until,
    )
    return AuditPage.model_validate({"items": page.rows, "next_cursor": page.next_cursor})
