"""Alert rule use cases: create, read, list, change, delete; the live evaluation the consumer
runs for ``experiment.epochs_logged`` and the lifecycle events; the backtest; the alerts list.
They never commit: the request's or the consumer batch's transaction does, so a rule's state,
its alert rows and their ``alert.*`` events are stored with the inbox mark or not at all.

Live evaluation of an experiment (``evaluate_epochs``), per event, whatever its size:
1. the owner's enabled rules, one query (none: done);
2. the experiment and which rules' scopes hold it, one query (filter rules as columns);
3. those rules' states, one query; the epochs after the least-advanced rule's last one, with
   just the metrics the rules read, one query;
4. each rule runs ``evaluation.evaluate_epoch`` over its ready epochs (in epoch order, up to a
   gap that a resent batch may still fill);
5. the changed states in one upsert, an ``alerts`` row and an outbox event per alert.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from runyard.experiments import access, errors
from runyard.experiments.alerts import repository
from runyard.experiments.alerts.evaluation import (
    Epoch,
    Firing,
    Rule,
    State,
    evaluate_epoch,
    evaluate_lifecycle,
    ready_epochs,
)
from runyard.experiments.alerts.models import Alert, AlertRule, AlertState
from runyard.experiments.alerts.schemas import (
    AlertRuleCreate,
    AlertRuleOut,
    AlertRuleUpdate,
    BacktestFiring,
    BacktestRequest,
    BacktestResult,
)
from runyard.experiments.models import Experiment, Project
from runyard.experiments.repository import (
    get_owned,
    list_owned,
    newest_first,
    unique_or_conflict,
)
from runyard.experiments.schemas import requested_changes
from runyard.experiments.tracking.query_language.syntax import QueryLanguageError
from runyard.shared.contracts.alerts import AlertResolved, AlertTriggered
from runyard.shared.db import new_id, utcnow
from runyard.shared.http import ProblemError
from runyard.shared.identity import Principal, require_writer
from runyard.shared.outbox import emit

#: a gap in an experiment's epoch numbers is waited for (a resent batch may fill it) until the
#: history is this many epochs past it, or the experiment ends
GAP_PATIENCE_EPOCHS = 100
NOT_NULLABLE = {"name", "condition", "scope", "severity", "cooldown_s", "rearm", "enabled"}


# --- rules ---------------------------------------------------------------------------------


def name_taken(name: str) -> dict[str, ProblemError]:
    return {"uq_alert_rules_owner_id_name": errors.NameTaken("an alert rule", name)}


def rule_out(rule: AlertRule) -> AlertRuleOut:
    scope: dict[str, Any] = {"type": rule.scope}
    if rule.scope == "project":
        scope["project_id"] = rule.project_id
    elif rule.scope == "experiment":
        scope["experiment_id"] = rule.experiment_id
    elif rule.scope == "filter":
        scope["filter"] = rule.filter
    return AlertRuleOut(
        id=rule.id,
        owner_id=rule.owner_id,
        name=rule.name,
        condition={"kind": rule.kind, **rule.params},
        scope=scope,
        severity=rule.severity,
        cooldown_s=rule.cooldown_s,
        rearm=rule.rearm,
        enabled=rule.enabled,
        version=rule.version,
        created_at=rule.created_at,
        updated_at=rule.updated_at,
    )


async def _check_scope(session: AsyncSession, principal: Principal, scope: BaseModel) -> None:
    """A project or experiment scope names one of the caller's; a filter parses: else 422."""
    kind = getattr(scope, "type", "all")
    if kind == "project":
        project = await session.get(Project, scope.project_id)  # type: ignore[attr-defined]
        if project is None or project.owner_id != principal.user_id:
            raise errors.ValidationFailed(
                "No such project of yours.", loc=["body", "scope", "project", "project_id"]
            )
    elif kind == "experiment":
        experiment = await session.get(Experiment, scope.experiment_id)  # type: ignore[attr-defined]
        if experiment is None or experiment.owner_id != principal.user_id:
            raise errors.ValidationFailed(
                "No such experiment of yours.",
                loc=["body", "scope", "experiment", "experiment_id"],
            )
    elif kind == "filter":
        try:
            repository.compiled_filter(scope.filter)  # type: ignore[attr-defined]
        except QueryLanguageError as exc:
            raise errors.ValidationFailed(
                f"Invalid filter: {exc.message}",
                loc=["body", "scope", "filter", "filter"],
                type_="query_language",
            ) from None


def _scope_columns(scope: BaseModel) -> dict[str, Any]:
    data = scope.model_dump()
    return {
        "scope": data["type"],
        "project_id": data.get("project_id"),
        "experiment_id": data.get("experiment_id"),
        "filter": data.get("filter"),
    }


def _condition_columns(condition: BaseModel) -> dict[str, Any]:
    data = condition.model_dump(mode="json", exclude_none=True)
    return {"kind": data.pop("kind"), "params": data}


async def create_rule(
    session: AsyncSession, *, principal: Principal, data: AlertRuleCreate
) -> AlertRule:
    require_writer(principal)
    await _check_scope(session, principal, data.scope)
    rule = AlertRule(
        id=new_id(),
        owner_id=principal.user_id,
        name=data.name,
        severity=data.severity,
        cooldown_s=data.cooldown_s,
        rearm=data.rearm,
        enabled=data.enabled,
        armed_at=utcnow(),
        version=1,
        **_condition_columns(data.condition),
        **_scope_columns(data.scope),
    )
    async with unique_or_conflict(session, name_taken(data.name)):
        session.add(rule)
    return rule


async def get_rule(
    session: AsyncSession, *, principal: Principal, rule_id: uuid.UUID, write: bool = False
) -> AlertRule:
    return await get_owned(
        session, AlertRule, rule_id, principal=principal, what="alert rule", write=write
    )


async def list_rules(
    session: AsyncSession,
    *,
    principal: Principal,
    limit: int,
    cursor: str | None,
    owner_id: uuid.UUID | None = None,
) -> tuple[list[AlertRule], str | None]:
    return await list_owned(
        session,
        AlertRule,
        principal=principal,
        kind="alert-rules",
        limit=limit,
        cursor=cursor,
        owner_id=owner_id,
    )


async def update_rule(
    session: AsyncSession, *, principal: Principal, rule_id: uuid.UUID, data: AlertRuleUpdate
) -> AlertRule:
    rule = await get_rule(session, principal=principal, rule_id=rule_id, write=True)
    changes = requested_changes(data, not_nullable=NOT_NULLABLE)
    new: dict[str, Any] = {}
    if data.scope is not None:
        await _check_scope(session, principal, data.scope)
        new |= _scope_columns(data.scope)
    if data.condition is not None:
        new |= _condition_columns(data.condition)
    rearmed = any(getattr(rule, k) != v for k, v in new.items())
    if rearmed:
        # what the rule remembered of each experiment meant the old condition or scope
        await session.execute(delete(AlertState).where(AlertState.rule_id == rule.id))
        new["armed_at"] = utcnow()
    for key in ("name", "severity", "cooldown_s", "rearm", "enabled"):
        if key in changes:
            new[key] = changes[key]
    async with unique_or_conflict(session, name_taken(changes.get("name", ""))):
        for key, value in new.items():
            setattr(rule, key, value)
        rule.version += 1
    return rule


async def delete_rule(session: AsyncSession, *, principal: Principal, rule_id: uuid.UUID) -> None:
    """The rule, its states and the alerts it fired."""
    rule = await get_rule(session, principal=principal, rule_id=rule_id, write=True)
    await session.delete(rule)
    await session.flush()


# --- alerts --------------------------------------------------------------------------------


async def list_alerts(
    session: AsyncSession,
    *,
    principal: Principal,
    limit: int,
    cursor: str | None,
    experiment_id: uuid.UUID | None = None,
    rule_id: uuid.UUID | None = None,
    status: str | None = None,
) -> tuple[list[Alert], str | None]:
    query = select(Alert)
    scope = access.owner_scope(Alert.owner_id, principal)
    if scope is not None:
        query = query.where(scope)
    if experiment_id is not None:
        query = query.where(Alert.experiment_id == experiment_id)
    if rule_id is not None:
        query = query.where(Alert.rule_id == rule_id)
    if status is not None:
        query = query.where(Alert.status == status)
    return await newest_first(session, query, Alert, kind="alerts", limit=limit, cursor=cursor)


async def _record(
    session: AsyncSession,
    rule: Rule,
    experiment: Any,
    owner_id: uuid.UUID,
    firing: Firing,
) -> None:
    """The alert's row and its event, in the caller's transaction."""
    alert = Alert(
        id=new_id(),
        rule_id=rule.id,
        experiment_id=experiment.id,
        owner_id=owner_id,
        status=firing.status,
        rule_name=rule.name,
        kind=rule.kind,
        severity=rule.severity,
        experiment_name=experiment.name,
        epoch=firing.epoch,
        values=firing.values,
        summary=firing.summary,
        created_at=utcnow(),
    )
    session.add(alert)
    fields: dict[str, Any] = {
        "alert_id": alert.id,
        "rule_id": rule.id,
        "rule_name": rule.name,
        "kind": rule.kind,
        "severity": rule.severity,
        "owner_id": owner_id,
        "experiment_id": experiment.id,
        "name": experiment.name,
        "project_id": experiment.project_id,
        "epoch": firing.epoch,
        "values": firing.values,
        "summary": firing.summary,
    }
    await emit(
        session,
        AlertTriggered(**fields) if firing.status == "triggered" else AlertResolved(**fields),
        subject=experiment.id,
    )


# --- live evaluation -------------------------------------------------------------------------


def _metrics_of(rules: Iterable[Rule]) -> tuple[list[str], list[str]]:
    metrics: dict[str, None] = {}
    non_finite: dict[str, None] = {}
    for rule in rules:
        for metric in rule.metrics():
            metrics[metric] = None
        if rule.kind == "not_finite":
            non_finite[rule.params["metric"]] = None
    return list(metrics), list(non_finite)


def run_rule(
    rule: Rule,
    state: State,
    history: Sequence[Epoch],
    *,
    experiment: str,
    best_mode: str,
    final: bool,
    armed_at: datetime | None,
) -> list[Firing]:
    """The rule over the epochs of ``history`` it has not evaluated, in order (the code the
    live path and the backtest share). ``armed_at``: epochs logged before it are learnt from
    silently (None: none is)."""
    by_epoch = {e.epoch: e for e in history}
    firings = []
    for number in ready_epochs(
        (e.epoch for e in history),
        state.last_epoch,
        final=final,
        gap_patience=GAP_PATIENCE_EPOCHS,
    ):
        epoch = by_epoch[number]
        silent = armed_at is not None and epoch.logged_at < armed_at
        firing = evaluate_epoch(
            rule, state, epoch, experiment=experiment, best_mode=best_mode, silent=silent
        )
        if firing is not None:
            firings.append(firing)
    return firings


async def evaluate_epochs(
    session: AsyncSession, *, experiment_id: uuid.UUID, owner_id: uuid.UUID, final: bool = False
) -> int:
    """Evaluate the owner's epoch rules over the experiment's new epochs; ``final``: the
    experiment ended, no gap is waited for. Returns how many alerts it wrote."""
    rows = await repository.active_rules(session, owner_id, lifecycle=False)
    if not rows:
        return 0
    await repository.lock_experiment_alerts(session, experiment_id)
    experiment, rows = await repository.matching(session, rows, experiment_id)
    if experiment is None or not rows:
        return 0
    rules = [(repository.as_rule(r), r) for r in rows]
    states = await repository.states(session, experiment_id, [r.id for r, _ in rules])
    lasts = [states[r.id].last_epoch if r.id in states else None for r, _ in rules]
    after = None if None in lasts else min(x for x in lasts if x is not None)
    metrics, non_finite = _metrics_of(r for r, _ in rules)
    history = (
        await repository.epochs(
            session, [experiment_id], metrics, after=after, non_finite=non_finite
        )
    )[experiment_id]
    if not history:
        return 0
    changed: dict[uuid.UUID, State] = {}
    alerts = 0
    for rule, _row in rules:
        state = states.get(rule.id) or State()
        before = state.last_epoch
        firings = run_rule(
            rule,
            state,
            history,
            experiment=experiment.name,
            best_mode=experiment.best_mode,
            final=final,
            armed_at=rule.created_at,
        )
        if state.last_epoch != before:
            changed[rule.id] = state
        for firing in firings:
            await _record(session, rule, experiment, owner_id, firing)
            alerts += 1
    await repository.save_states(session, experiment_id, changed)
    return alerts


async def evaluate_lifecycle_event(
    session: AsyncSession,
    *,
    experiment_id: uuid.UUID,
    owner_id: uuid.UUID,
    event: str,
    at: datetime,
    final_metrics: dict[str, Any],
    error: str | None,
) -> int:
    """An experiment failed, stalled or completed: its lifecycle rules; an ended experiment's
    remaining epochs first (gaps are not waited for any more)."""
    alerts = 0
    if event in ("failed", "completed", "cancelled"):
        alerts += await evaluate_epochs(
            session, experiment_id=experiment_id, owner_id=owner_id, final=True
        )
    if event == "cancelled":
        return alerts
    rows = await repository.active_rules(session, owner_id, lifecycle=True)
    rows = [r for r in rows if r.params.get("event") == event]
    if not rows:
        return alerts
    await repository.lock_experiment_alerts(session, experiment_id)
    experiment, rows = await repository.matching(session, rows, experiment_id)
    if experiment is None or not rows:
        return alerts
    rules = [repository.as_rule(r) for r in rows]
    states = await repository.states(session, experiment_id, [r.id for r in rules])
    changed: dict[uuid.UUID, State] = {}
    for rule in rules:
        state = states.get(rule.id) or State()
        firing = evaluate_lifecycle(
            rule,
            state,
            event=event,
            at=at,
            experiment=experiment.name,
            final_metrics=final_metrics,
            error=error,
        )
        if firing is not None:
            changed[rule.id] = state
            await _record(session, rule, experiment, owner_id, firing)
            alerts += 1
    await repository.save_states(session, experiment_id, changed)
    return alerts


# --- backtest --------------------------------------------------------------------------------


def _lifecycle_of(experiment: Experiment) -> tuple[str, datetime] | None:
    """The lifecycle event an experiment's stored state shows (for a backtest)."""
    if experiment.status == "failed":
        return "failed", experiment.ended_at or experiment.updated_at
    if experiment.status == "completed":
        return "completed", experiment.ended_at or experiment.updated_at
    if experiment.stalled_at is not None:
        return "stalled", experiment.stalled_at
    return None


async def backtest(
    session: AsyncSession, *, principal: Principal, rule_id: uuid.UUID, data: BacktestRequest
) -> BacktestResult:
    """The rule over the whole stored history of its matching experiments (newest first, at
    most ``max_experiments``), from a fresh state, with the live path's code: where it would
    have fired. Changes nothing."""
    row = await get_rule(session, principal=principal, rule_id=rule_id)
    query = select(Experiment).where(repository.scope_condition(row))
    if data.experiment_ids is not None:
        query = query.where(Experiment.id.in_(data.experiment_ids))
    experiments = list(
        await session.scalars(
            query.order_by(Experiment.created_at.desc(), Experiment.id.desc()).limit(
                data.max_experiments
            )
        )
    )
    rule = repository.as_rule(row)
    firings: list[BacktestFiring] = []
    evaluated = 0
    histories: dict[uuid.UUID, list[Epoch]] = {}
    if rule.kind != "lifecycle" and experiments:
        metrics, non_finite = _metrics_of([rule])
        histories = await repository.epochs(
            session, [e.id for e in experiments], metrics, after=None, non_finite=non_finite
        )
    for experiment in experiments:
        state = State()
        if rule.kind == "lifecycle":
            found = _lifecycle_of(experiment)
            results: list[Firing] = []
            if found is not None:
                firing = evaluate_lifecycle(
                    rule,
                    state,
                    event=found[0],
                    at=found[1],
                    experiment=experiment.name,
                    final_metrics=experiment.metrics,
                    error=experiment.error_message,
                )
                results = [firing] if firing else []
        else:
            history = histories.get(experiment.id, [])
            evaluated += len(history)
            results = run_rule(
                rule,
                state,
                history,
                experiment=experiment.name,
                best_mode=experiment.best_mode,
                final=True,
                armed_at=None,
            )
        firings += [
            BacktestFiring(
                experiment_id=experiment.id,
                experiment_name=experiment.name,
                status=f.status,
                epoch=f.epoch,
                values=f.values,
                summary=f.summary,
                at=f.at,
            )
            for f in results
        ]
    return BacktestResult(
        rule_id=rule.id,
        experiments_evaluated=len(experiments),
        epochs_evaluated=evaluated,
        firings=firings,
    )
