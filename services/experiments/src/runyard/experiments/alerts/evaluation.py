"""How a rule judges an experiment, epoch after epoch: pure code, no I/O.

The live consumer and the backtest both run ``Evaluator.epoch`` over the same stored epochs in
epoch order, from the same starting state, so what a backtest reports is what live evaluation
fires (ADR 0018). A rule's *condition* (``condition``) says, for one epoch, whether the rule's
situation holds (``True``), does not (``False``), or cannot be told (``None``: the metric is
missing at that epoch, which changes nothing). ``decide`` turns conditions into alerts:

- the condition starts to hold and the rule is not firing: ``triggered`` (unless the rule fires
  once per experiment and did already, or its cooldown since the last alert has not passed:
  then it stays quiet and may fire at a later epoch once the cooldown has passed);
- the condition stops holding while the rule is firing: the rule clears; a re-arming rule says
  so with ``resolved``.

Cooldowns are measured between the epochs' logging times (``training_runs.created_at``), not
the evaluation's wall clock, so a late or repeated evaluation decides the same.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}
#: how a threshold crossing reads: "val_accuracy reached 0.95"
OPERATOR_WORDS = {">": "rose above", ">=": "reached", "<": "fell below", "<=": "fell to"}
LIFECYCLE_EVENTS = ("failed", "stalled", "completed")


@dataclass(frozen=True)
class Rule:
    id: Any
    name: str
    kind: str
    severity: str
    params: Mapping[str, Any]
    cooldown_s: int = 0
    rearm: bool = False
    created_at: datetime | None = None

    def metrics(self) -> tuple[str, ...]:
        """The epoch metrics the rule reads."""
        if self.kind == "gap":
            return (self.params["val_metric"], self.params["train_metric"])
        if self.kind == "lifecycle":
            return ()
        return (self.params["metric"],)


@dataclass
class State:
    """A rule's memory of one experiment (a row of ``alert_states``)."""

    last_epoch: int | None = None
    memory: dict[str, Any] = field(default_factory=dict)
    firing: bool = False
    fired_count: int = 0
    last_fired_at: datetime | None = None


@dataclass(frozen=True)
class Epoch:
    epoch: int
    #: metric -> value (NaN and infinities possible: from MLflow's metric log)
    values: Mapping[str, float]
    logged_at: datetime


@dataclass(frozen=True)
class Firing:
    """An alert: ``triggered`` or ``resolved``."""

    status: str
    epoch: int | None
    values: dict[str, Any]
    summary: str
    at: datetime


@dataclass(frozen=True)
class Judgement:
    active: bool | None
    values: dict[str, Any] = field(default_factory=dict)
    #: the summary when the rule fires (``{name}``: the experiment's name)
    summary: str = ""


UNKNOWN = Judgement(None)


def fmt(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return f"{value:.4g}"


def json_value(value: float) -> float | str:
    """JSON (and JSONB) holds no NaN or infinity: those travel as text."""
    return value if math.isfinite(value) else fmt(value)


def _finite(values: Mapping[str, float], metric: str) -> float | None:
    value = values.get(metric)
    if value is None or not math.isfinite(value):
        return None
    return value


def condition(rule: Rule, memory: dict[str, Any], epoch: Epoch, best_mode: str) -> Judgement:
    """The rule's condition at ``epoch``; updates ``memory`` (plateau, divergence)."""
    p = rule.params
    e = epoch.epoch
    if rule.kind == "threshold":
        metric, op, limit = p["metric"], p["op"], float(p["value"])
        v = _finite(epoch.values, metric)
        if v is None:
            return UNKNOWN
        return Judgement(
            OPERATORS[op](v, limit),
            {metric: v, "threshold": limit, "op": op},
            f"{metric} {OPERATOR_WORDS[op]} {limit:g} in {{name}}: {fmt(v)} (epoch {e})",
        )
    if rule.kind == "not_finite":
        metric = p["metric"]
        raw = epoch.values.get(metric)
        if raw is None:
            return UNKNOWN
        return Judgement(
            not math.isfinite(raw),
            {metric: json_value(raw)},
            f"{metric} became {fmt(raw)} in {{name}} (epoch {e})",
        )
    if rule.kind == "plateau":
        metric, patience = p["metric"], int(p["epochs"])
        min_delta = float(p.get("min_delta") or 0.0)
        mode = p.get("mode") or best_mode
        v = _finite(epoch.values, metric)
        if v is None:
            return UNKNOWN
        best = memory.get("best")
        improved = (
            best is None
            or (mode == "min" and v < best - min_delta)
            or (mode == "max" and v > best + min_delta)
        )
        if improved:
            memory["best"], memory["best_epoch"], memory["since"] = v, e, 0
        else:
            memory["since"] = int(memory.get("since", 0)) + 1
        since = memory["since"]
        best_value = float(memory["best"])
        return Judgement(
            since >= patience,
            {metric: v, "best": best_value, "best_epoch": memory["best_epoch"], "epochs": since},
            f"{metric} plateaued in {{name}}: no improvement on {fmt(best_value)} "
            f"(epoch {memory['best_epoch']}) for {since} epochs (epoch {e})",
        )
    if rule.kind == "divergence":
        metric, span, percent = p["metric"], int(p["epochs"]), float(p["percent"])
        v = _finite(epoch.values, metric)
        if v is None:
            return UNKNOWN
        recent = [*memory.get("recent", []), v][-(span + 1) :]
        memory["recent"] = recent
        if len(recent) <= span:
            return Judgement(False)
        ref = recent[0]
        if ref == 0:
            change = math.inf if v > 0 else (-math.inf if v < 0 else 0.0)
        else:
            change = (v - ref) / abs(ref) * 100
        shown = "+Inf" if change == math.inf else f"{change:+.0f}"
        return Judgement(
            change > percent,
            {metric: v, "reference": ref, "change_percent": json_value(change), "epochs": span},
            f"{metric} diverged in {{name}}: {shown} % over {span} epochs (epoch {e})",
        )
    if rule.kind == "gap":
        val_metric, train_metric, limit = p["val_metric"], p["train_metric"], float(p["gap"])
        val = _finite(epoch.values, val_metric)
        train = _finite(epoch.values, train_metric)
        if val is None or train is None:
            return UNKNOWN
        reverse = p.get("direction") == "train_minus_val"
        gap = train - val if reverse else val - train
        first, second = (train_metric, val_metric) if reverse else (val_metric, train_metric)
        return Judgement(
            gap > limit,
            {val_metric: val, train_metric: train, "gap": gap, "limit": limit},
            f"{first} - {second} gap in {{name}}: {fmt(gap)} > {limit:g} (epoch {e})",
        )
    return UNKNOWN


def lifecycle_condition(
    rule: Rule, event: str, final_metrics: Mapping[str, Any], error: str | None
) -> Judgement:
    """A lifecycle rule and an experiment's ``failed``, ``stalled`` or ``completed``."""
    p = rule.params
    if rule.kind != "lifecycle" or p["event"] != event:
        return UNKNOWN
    if event == "failed":
        return Judgement(True, {}, "{name} failed" + (f": {error[:200]}" if error else ""))
    if event == "stalled":
        return Judgement(True, {}, "{name} stopped reporting")
    metric = p.get("metric")
    if not metric:
        return Judgement(True, {}, "{name} completed")
    raw = final_metrics.get(metric)
    if not isinstance(raw, int | float) or isinstance(raw, bool) or not math.isfinite(raw):
        return UNKNOWN
    limit = float(p["value"])
    return Judgement(
        OPERATORS[p["op"]](float(raw), limit),
        {metric: float(raw), "threshold": limit, "op": p["op"]},
        f"{{name}} completed with {metric} {fmt(float(raw))} ({p['op']} {limit:g})",
    )


def decide(
    rule: Rule,
    state: State,
    judgement: Judgement,
    *,
    epoch: int | None,
    at: datetime,
    experiment: str,
) -> Firing | None:
    if judgement.active is None:
        return None
    if judgement.active and not state.firing:
        if state.fired_count and not rule.rearm:
            return None
        if (
            state.last_fired_at is not None
            and (at - state.last_fired_at).total_seconds() < rule.cooldown_s
        ):
            return None
        state.firing = True
        state.fired_count += 1
        state.last_fired_at = at
        return Firing(
            "triggered", epoch, judgement.values, judgement.summary.format(name=experiment), at
        )
    if not judgement.active and state.firing:
        state.firing = False
        if rule.rearm:
            where = f" (epoch {epoch})" if epoch is not None else ""
            return Firing(
                "resolved",
                epoch,
                judgement.values,
                f"{rule.name} cleared in {experiment}{where}",
                at,
            )
    return None


def evaluate_epoch(
    rule: Rule, state: State, epoch: Epoch, *, experiment: str, best_mode: str, silent: bool
) -> Firing | None:
    """One epoch, in order. ``silent``: learn from it (a rule created after the epoch was
    logged) without firing or clearing."""
    judgement = condition(rule, state.memory, epoch, best_mode)
    state.last_epoch = epoch.epoch
    if silent:
        return None
    return decide(
        rule, state, judgement, epoch=epoch.epoch, at=epoch.logged_at, experiment=experiment
    )


def evaluate_lifecycle(
    rule: Rule,
    state: State,
    *,
    event: str,
    at: datetime,
    experiment: str,
    final_metrics: Mapping[str, Any],
    error: str | None,
) -> Firing | None:
    """A lifecycle event: fires (subject to fire-once and cooldown) and is over at once, so the
    rule can fire again for the next one (a re-arming rule: a second stall)."""
    judgement = lifecycle_condition(rule, event, final_metrics, error)
    firing = decide(rule, state, judgement, epoch=None, at=at, experiment=experiment)
    state.firing = False
    return firing


def ready_epochs(
    stored: Iterable[int], last: int | None, *, final: bool, gap_patience: int
) -> Iterator[int]:
    """The stored epochs (ascending) after ``last`` that can be evaluated now, in order: up to
    the first gap in the epoch numbers, since a missing epoch may still arrive (an SDK resends
    a batch that failed). A history starts at epoch 0 or 1. A gap is passed over when the
    highest stored epoch is more than ``gap_patience`` epochs past it (the history has a hole,
    or logs every k-th step) or when the experiment has ended (``final``)."""
    epochs = [e for e in stored if last is None or e > last]
    if not epochs:
        return
    highest = epochs[-1]
    prev = last
    for e in epochs:
        contiguous = e <= 1 if prev is None else e == prev + 1
        if (
            not contiguous
            and not final
            and highest - (prev if prev is not None else 0) <= (gap_patience)
        ):
            return
        yield e
        prev = e
