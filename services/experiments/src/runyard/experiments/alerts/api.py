"""``/api/v1/alert-rules``: a user's alert rules and their backtest; ``/api/v1/alerts``: the
alerts they fired (per rule, per experiment)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query, Response

from runyard.experiments.alerts import service
from runyard.experiments.alerts.schemas import (
    AlertOut,
    AlertRuleCreate,
    AlertRuleOut,
    AlertRuleUpdate,
    BacktestRequest,
    BacktestResult,
)
from runyard.shared.identity import CurrentPrincipal
from runyard.shared.pagination import DEFAULT_LIMIT, CursorParam, Limit, Page
from runyard.shared.runtime import SessionDep

router = APIRouter(prefix="/api/v1/alert-rules", tags=["alerts"])
alerts = APIRouter(prefix="/api/v1/alerts", tags=["alerts"])

INVALID: dict[int | str, dict[str, Any]] = {
    422: {"description": "an invalid field: the problem's `errors` name it"}
}


@router.post(
    "",
    status_code=201,
    response_model=AlertRuleOut,
    responses={409: {"description": "you already have an alert rule of that name"}, **INVALID},
)
async def create_alert_rule(
    body: AlertRuleCreate, session: SessionDep, principal: CurrentPrincipal
) -> AlertRuleOut:
    """A rule on your experiments' metrics or lifecycle; it watches epochs logged from now on."""
    rule = await service.create_rule(session, principal=principal, data=body)
    return service.rule_out(rule)


@router.get("", response_model=Page[AlertRuleOut])
async def list_alert_rules(
    session: SessionDep,
    principal: CurrentPrincipal,
    owner_id: Annotated[
        uuid.UUID | None, Query(description="admins and viewers: only this owner's rules")
    ] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: CursorParam = None,
) -> Page[AlertRuleOut]:
    """Newest first."""
    rows, next_cursor = await service.list_rules(
        session, principal=principal, limit=limit, cursor=cursor, owner_id=owner_id
    )
    return Page[AlertRuleOut](items=[service.rule_out(r) for r in rows], next_cursor=next_cursor)


@router.get("/{rule_id}", response_model=AlertRuleOut)
async def get_alert_rule(
    rule_id: uuid.UUID, session: SessionDep, principal: CurrentPrincipal
) -> AlertRuleOut:
    return service.rule_out(await service.get_rule(session, principal=principal, rule_id=rule_id))


@router.patch(
    "/{rule_id}",
    response_model=AlertRuleOut,
    responses={409: {"description": "you already have an alert rule of that name"}, **INVALID},
)
async def update_alert_rule(
    rule_id: uuid.UUID, body: AlertRuleUpdate, session: SessionDep, principal: CurrentPrincipal
) -> AlertRuleOut:
    """A new condition or scope starts the rule afresh on every experiment."""
    rule = await service.update_rule(session, principal=principal, rule_id=rule_id, data=body)
    return service.rule_out(rule)


@router.delete("/{rule_id}", status_code=204)
async def delete_alert_rule(
    rule_id: uuid.UUID, session: SessionDep, principal: CurrentPrincipal
) -> Response:
    """The rule and the alerts it fired."""
    await service.delete_rule(session, principal=principal, rule_id=rule_id)
    return Response(status_code=204)


@router.post("/{rule_id}/backtest", response_model=BacktestResult, responses=INVALID)
async def backtest_alert_rule(
    rule_id: uuid.UUID,
    session: SessionDep,
    principal: CurrentPrincipal,
    body: Annotated[BacktestRequest | None, Body()] = None,
) -> BacktestResult:
    """Where the rule would have fired over the stored history of its matching experiments
    (the newest ``max_experiments``), evaluated by the same code as live alerts. Stores
    nothing and sends nothing."""
    return await service.backtest(
        session, principal=principal, rule_id=rule_id, data=body or BacktestRequest()
    )


@alerts.get("", response_model=Page[AlertOut])
async def list_alerts(
    session: SessionDep,
    principal: CurrentPrincipal,
    experiment_id: Annotated[uuid.UUID | None, Query(description="only this experiment's")] = None,
    rule_id: Annotated[uuid.UUID | None, Query(description="only this rule's")] = None,
    status: Annotated[
        Literal["triggered", "resolved"] | None, Query(description="only these")
    ] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: CursorParam = None,
) -> Page[AlertOut]:
    """Alerts your rules fired and cleared, newest first."""
    rows, next_cursor = await service.list_alerts(
        session,
        principal=principal,
        limit=limit,
        cursor=cursor,
        experiment_id=experiment_id,
        rule_id=rule_id,
        status=status,
    )
    return Page[AlertOut](items=[AlertOut.model_validate(r) for r in rows], next_cursor=next_cursor)
