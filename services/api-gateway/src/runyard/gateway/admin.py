"""Admin endpoints served by the gateway itself: request logs, metric summaries, audit trail.

Each list takes its query parameters as one model (``limit`` and ``cursor`` first, the time
window last) and hands them to its repository query as they are.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from runyard.gateway import repository
from runyard.gateway.api import identify, limit_caller
from runyard.gateway.context import gateway_state
from runyard.gateway.errors import AdminOnly
from runyard.gateway.proxy import ADMIN_PREFIX
from runyard.gateway.schemas import AuditPage, MetricsPage, RequestLogPage
from runyard.shared.identity import Principal
from runyard.shared.pagination import DEFAULT_LIMIT, CursorParam, Limit
from runyard.shared.runtime import db_session


async def require_admin(request: Request, response: Response) -> Principal:
    state = gateway_state(request)
    request.state.service = "gateway"
    principal = await identify(request, state, service="admin")
    decision = limit_caller(request, state, principal)
    if decision is not None:
        response.headers.update(decision.headers())
    if principal.role != "admin":
        raise AdminOnly()
    return principal


AdminDep = Annotated[Principal, Depends(require_admin)]
SessionDep = Annotated[AsyncSession, Depends(db_session)]
Since = Annotated[datetime | None, Query(description="From this time (inclusive).")]
#: Free-text filters: bounded, and no NUL (PostgreSQL text cannot hold it).
Text = Annotated[str | None, Query(max_length=256, pattern=r"^[^\x00]*$")]
Until = Annotated[datetime | None, Query(description="Before this time.")]


class RequestLogQuery(BaseModel):
    limit: Limit = DEFAULT_LIMIT
    cursor: CursorParam = None
    method: Text = None
    status: Annotated[int | None, Query(ge=100, le=599)] = None
    errors_only: bool = False
    service: Text = None
    path_prefix: Annotated[str | None, Query(max_length=2048, pattern=r"^[^\x00]*$")] = None
    user_id: uuid.UUID | None = None
    api_key_id: uuid.UUID | None = None
    request_id: Text = None
    since: Since = None
    until: Until = None


class MetricsQuery(BaseModel):
    limit: Limit = DEFAULT_LIMIT
    cursor: CursorParam = None
    aggregation: Literal["minute", "hour"] = "minute"
    endpoint: Annotated[
        str | None,
        Query(
            max_length=512,
            pattern=r"^[^\x00]*$",
            description="A route such as `/api/v1/experiments/{id}`; `*` for all requests.",
        ),
    ] = None
    method: Text = None
    since: Since = None
    until: Until = None


class AuditQuery(BaseModel):
    limit: Limit = DEFAULT_LIMIT
    cursor: CursorParam = None
    user_id: uuid.UUID | None = None
    action: Annotated[
        str | None,
        Query(
            max_length=600,
            pattern=r"^[^\x00]*$",
            description="Prefix of `<METHOD> <route>`, e.g. `DELETE`.",
        ),
    ] = None
    status: Literal["success", "failure"] | None = None
    since: Since = None
    until: Until = None


router = APIRouter(prefix=ADMIN_PREFIX, tags=["admin"])


@router.get("/request-logs", response_model=RequestLogPage)
async def request_logs(
    _: AdminDep, session: SessionDep, query: Annotated[RequestLogQuery, Query()]
) -> RequestLogPage:
    """Requests through the gateway, newest first (one row per request, written in batches)."""
    items, next_cursor = await repository.list_request_logs(session, **query.model_dump())
    return RequestLogPage.model_validate({"items": items, "next_cursor": next_cursor})


@router.get("/metrics", response_model=MetricsPage)
async def metrics(
    _: AdminDep, session: SessionDep, query: Annotated[MetricsQuery, Query()]
) -> MetricsPage:
    """Per-minute or per-hour summaries (requests, errors, error rate, rps, p50/p95/p99 latency)
    per endpoint, plus one `*` row per period for all requests; newest period first."""
    items, next_cursor = await repository.list_metrics(session, **query.model_dump())
    return MetricsPage.model_validate({"items": items, "next_cursor": next_cursor})


@router.get("/audit-log", response_model=AuditPage)
async def audit_log(
    _: AdminDep, session: SessionDep, query: Annotated[AuditQuery, Query()]
) -> AuditPage:
    """State-changing requests by identified users (who, what, result), newest first."""
    items, next_cursor = await repository.list_audit_entries(session, **query.model_dump())
    return AuditPage.model_validate({"items": items, "next_cursor": next_cursor})
