"""Every query of alert rules: the owner's active rules in one statement, scope matching for
all of them in one more, the states of the matching rules, and the epochs to evaluate with only
the metrics the rules read, in one query (non-finite values from MLflow's metric log laid over
them when a rule watches for those)."""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    Boolean,
    ColumnElement,
    DateTime,
    Float,
    Integer,
    Text,
    Uuid,
    and_,
    bindparam,
    cast,
    false,
    func,
    literal,
    select,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, insert
from sqlalchemy.ext.asyncio import AsyncSession

from runyard.experiments.alerts.evaluation import Epoch, Rule, State
from runyard.experiments.alerts.models import AlertRule, AlertState
from runyard.experiments.models import Experiment, MlflowMetric, TrainingRun
from runyard.experiments.tracking.query_language import compiler
from runyard.experiments.tracking.repository.runs import cast_table, run_metric

_RULE_COLUMNS = (
    AlertRule.id,
    AlertRule.name,
    AlertRule.kind,
    AlertRule.severity,
    AlertRule.params,
    AlertRule.cooldown_s,
    AlertRule.rearm,
    AlertRule.armed_at,
    AlertRule.scope,
    AlertRule.project_id,
    AlertRule.experiment_id,
    AlertRule.filter,
)


def as_rule(row: Any) -> Rule:
    return Rule(
        id=row.id,
        name=row.name,
        kind=row.kind,
        severity=row.severity,
        params=row.params,
        cooldown_s=row.cooldown_s,
        rearm=row.rearm,
        created_at=row.armed_at,
    )


async def active_rules(session: AsyncSession, owner_id: uuid.UUID, *, lifecycle: bool) -> list[Any]:
    """The owner's enabled rules of the epoch kinds (or, ``lifecycle``, of kind lifecycle)."""
    kind = AlertRule.kind == "lifecycle" if lifecycle else AlertRule.kind != "lifecycle"
    query = select(*_RULE_COLUMNS).where(AlertRule.owner_id == owner_id, AlertRule.enabled, kind)
    return list((await session.execute(query)).all())


@lru_cache(maxsize=4096)
def compiled_filter(text_: str) -> ColumnElement[bool]:
    """A rule's filter as SQL over ``experiments`` (parsed once per process and text)."""
    return compiler.compile_filter(text_)


async def matching(
    session: AsyncSession, rules: Sequence[Any], experiment_id: uuid.UUID
) -> tuple[Any, list[Any]]:
    """The experiment (id, name, project, best mode; None if gone) and the rules whose scope
    holds it, in one query: each filter rule's expression is one boolean column."""
    filters = [r for r in rules if r.scope == "filter"]
    columns: list[Any] = [
        Experiment.id,
        Experiment.name,
        Experiment.project_id,
        Experiment.best_mode,
        Experiment.deleted_at,
    ]
    for i, rule in enumerate(filters):
        try:
            condition = compiled_filter(rule.filter or "")
        except ValueError:  # validated when stored; a language change: the rule matches nothing
            condition = false()
        columns.append(func.coalesce(condition, false()).label(f"f{i}"))
    experiment = (
        await session.execute(select(*columns).where(Experiment.id == experiment_id))
    ).first()
    if experiment is None or experiment.deleted_at is not None:
        return None, []
    matched_filters = {r.id for i, r in enumerate(filters) if experiment[5 + i]}
    found = []
    for rule in rules:
        if (
            rule.scope == "all"
            or (rule.scope == "project" and rule.project_id == experiment.project_id)
            or (rule.scope == "experiment" and rule.experiment_id == experiment_id)
            or rule.id in matched_filters
        ):
            found.append(rule)
    return experiment, found


async def lock_experiment_alerts(session: AsyncSession, experiment_id: uuid.UUID) -> None:
    """One evaluation of an experiment at a time (an epochs event and a lifecycle event of it
    travel on different topics and may be handled at once), without touching the experiment's
    row, which requests that log epochs lock."""
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
        {"key": f"runyard.alerts:{experiment_id}"},
    )


async def states(
    session: AsyncSession, experiment_id: uuid.UUID, rule_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, State]:
    rows = await session.execute(
        select(
            AlertState.rule_id,
            AlertState.last_epoch,
            AlertState.memory,
            AlertState.firing,
            AlertState.fired_count,
            AlertState.last_fired_at,
        ).where(AlertState.experiment_id == experiment_id, AlertState.rule_id.in_(rule_ids))
    )
    return {
        r.rule_id: State(r.last_epoch, dict(r.memory), r.firing, r.fired_count, r.last_fired_at)
        for r in rows
    }


_STATE_TABLE = cast_table(AlertState.__table__)
_STATE_COLUMNS = ("last_epoch", "memory", "firing", "fired_count", "last_fired_at")


def _save_statement() -> Any:
    """Built once: ``INSERT ... SELECT unnest(...)`` with one array per column, so a thousand
    states cost one statement whose SQL never changes (a multi-row VALUES of that size is
    compiled anew each time, and that compiling was most of an evaluation's CPU)."""

    def column(name: str, type_: Any) -> Any:
        return func.unnest(bindparam(f"p_{name}", type_=ARRAY(type_)))

    source = select(
        column("rule_id", Uuid).label("rule_id"),
        bindparam("p_experiment_id", type_=Uuid).label("experiment_id"),
        column("last_epoch", Integer).label("last_epoch"),
        cast(column("memory", Text), JSONB).label("memory"),
        column("firing", Boolean).label("firing"),
        column("fired_count", Integer).label("fired_count"),
        column("last_fired_at", DateTime(timezone=True)).label("last_fired_at"),
    )
    stmt = insert(_STATE_TABLE).from_select(["rule_id", "experiment_id", *_STATE_COLUMNS], source)
    return stmt.on_conflict_do_update(
        index_elements=[_STATE_TABLE.c.rule_id, _STATE_TABLE.c.experiment_id],
        set_={name: stmt.excluded[name] for name in _STATE_COLUMNS} | {"updated_at": func.now()},
    )


SAVE_STATES = _save_statement()


async def save_states(
    session: AsyncSession, experiment_id: uuid.UUID, changed: dict[uuid.UUID, State]
) -> None:
    """Upsert the states in one statement."""
    if not changed:
        return
    states = list(changed.values())
    await session.execute(
        SAVE_STATES,
        {
            "p_rule_id": list(changed),
            "p_experiment_id": experiment_id,
            "p_last_epoch": [s.last_epoch for s in states],
            "p_memory": [json.dumps(s.memory, separators=(",", ":")) for s in states],
            "p_firing": [s.firing for s in states],
            "p_fired_count": [s.fired_count for s in states],
            "p_last_fired_at": [s.last_fired_at for s in states],
        },
    )


async def epochs(
    session: AsyncSession,
    experiment_ids: Sequence[uuid.UUID],
    metrics: Sequence[str],
    *,
    after: int | None,
    non_finite: Sequence[str] = (),
) -> dict[uuid.UUID, list[Epoch]]:
    """The stored epochs after ``after`` (all when None), ascending, with the values of
    ``metrics`` they have; for the metrics in ``non_finite``, a NaN or infinity logged at an
    epoch's step through MLflow's API replaces the (missing) value."""
    names = list(dict.fromkeys(metrics))
    query = select(
        TrainingRun.experiment_id,
        TrainingRun.epoch,
        TrainingRun.created_at,
        *(run_metric(m).label(f"m{i}") for i, m in enumerate(names)),
    ).where(TrainingRun.experiment_id.in_(experiment_ids))
    if after is not None:
        query = query.where(TrainingRun.epoch > after)
    found: dict[uuid.UUID, list[Epoch]] = {e: [] for e in experiment_ids}
    rows = await session.execute(query.order_by(TrainingRun.experiment_id, TrainingRun.epoch))
    for row in rows:
        cells: tuple[Any, ...] = tuple(row)
        values: dict[str, float] = {
            m: cells[3 + i] for i, m in enumerate(names) if cells[3 + i] is not None
        }
        found[row.experiment_id].append(Epoch(row.epoch, values, row.created_at))
    if non_finite:
        await _overlay_non_finite(session, experiment_ids, list(non_finite), after, found)
    return found


async def _overlay_non_finite(
    session: AsyncSession,
    experiment_ids: Sequence[uuid.UUID],
    metrics: list[str],
    after: int | None,
    found: dict[uuid.UUID, list[Epoch]],
) -> None:
    value = MlflowMetric.value
    special = value.in_(
        [literal(math.nan, Float), literal(math.inf, Float), literal(-math.inf, Float)]
    )
    query = select(MlflowMetric.experiment_id, MlflowMetric.step, MlflowMetric.key, value).where(
        MlflowMetric.experiment_id.in_(experiment_ids),
        MlflowMetric.key.in_(metrics),
        special,
        MlflowMetric.step > after if after is not None else true(),
    )
    rows = (await session.execute(query)).all()
    if not rows:
        return
    by_step: dict[tuple[uuid.UUID, int], dict[str, float]] = {}
    for row in rows:
        by_step.setdefault((row.experiment_id, row.step), {})[row.key] = row.value
    for experiment_id, history in found.items():
        for i, epoch in enumerate(history):
            extra = by_step.get((experiment_id, epoch.epoch))
            if extra:
                merged = dict(epoch.values)
                for key, v in extra.items():
                    merged.setdefault(key, v)
                history[i] = Epoch(epoch.epoch, merged, epoch.logged_at)


def scope_condition(rule: AlertRule) -> ColumnElement[bool]:
    """The rule's scope as SQL over ``experiments`` (the backtest's experiments)."""
    condition: ColumnElement[bool] = and_(
        Experiment.owner_id == rule.owner_id, Experiment.deleted_at.is_(None)
    )
    if rule.scope == "project":
        condition = and_(condition, Experiment.project_id == rule.project_id)
    elif rule.scope == "experiment":
        condition = and_(condition, Experiment.id == rule.experiment_id)
    elif rule.scope == "filter":
        condition = and_(condition, compiled_filter(rule.filter or ""))
    return condition
