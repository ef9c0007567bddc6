"""The Optuna side of HPO campaigns: search spaces as distributions, samplers, pruners, and a
study rebuilt in memory from the campaign's stored trials (ADR 0007).

Every ask and every pruning question rebuilds the study from ``hpo_trials`` (parameters, state,
value, Optuna's system attributes) and the trial experiments' training runs (intermediate values
per epoch), so no Optuna state lives anywhere else: a restart, or another replica, sees the same
study. Rebuilding and asking is CPU work that grows with the history: the service calls
``suggest_trial`` and ``decide_pruning`` in a worker thread, never on the event loop (they read
the rows they are given and touch no session).

The samplers are seeded from the campaign's seed and the number of trials so far, so a rebuilt
random or TPE sampler does not replay the previous suggestion.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.pruners import BasePruner, HyperbandPruner, MedianPruner, NopPruner
from optuna.samplers import BaseSampler, GridSampler, RandomSampler, TPESampler
from optuna.storages import InMemoryStorage
from optuna.trial import FrozenTrial, Trial, TrialState

from runyard.experiments.models import HpoCampaign, HpoTrial

optuna.logging.set_verbosity(optuna.logging.WARNING)

STATES = {
    "running": TrialState.RUNNING,
    "complete": TrialState.COMPLETE,
    "pruned": TrialState.PRUNED,
    "fail": TrialState.FAIL,
}


class SearchSpaceError(ValueError):
    """The search space cannot be searched with the chosen method (``loc`` names the param)."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


def float_steps(low: float, high: float, step: float) -> list[float]:
    count = math.floor((high - low) / step + 1e-9) + 1
    return [round(low + i * step, 12) for i in range(count)]


def grid_values(space: Mapping[str, Mapping[str, Any]]) -> dict[str, list[Any]]:
    """Every value each parameter takes in a grid search."""
    grid: dict[str, list[Any]] = {}
    for name, spec in space.items():
        if spec["type"] == "categorical":
            grid[name] = list(spec["choices"])
        elif spec["type"] == "int":
            if spec.get("log"):
                raise SearchSpaceError(name, "a grid cannot enumerate a log-scale int")
            grid[name] = list(range(spec["low"], spec["high"] + 1, spec.get("step") or 1))
        elif spec.get("step") is None:
            raise SearchSpaceError(name, "a grid needs a step for a float parameter")
        else:
            grid[name] = float_steps(spec["low"], spec["high"], spec["step"])
    return grid


def grid_size(space: Mapping[str, Mapping[str, Any]]) -> int:
    """The number of grid points, counted without enumerating them."""
    counts = []
    for name, spec in space.items():
        if spec["type"] == "categorical":
            counts.append(len(spec["choices"]))
        elif spec["type"] == "int":
            if spec.get("log"):
                raise SearchSpaceError(name, "a grid cannot enumerate a log-scale int")
            counts.append((spec["high"] - spec["low"]) // (spec.get("step") or 1) + 1)
        elif spec.get("step") is None:
            raise SearchSpaceError(name, "a grid needs a step for a float parameter")
        else:
            counts.append(math.floor((spec["high"] - spec["low"]) / spec["step"] + 1e-9) + 1)
    return math.prod(counts)


def distributions(campaign: HpoCampaign) -> dict[str, BaseDistribution]:
    if campaign.method == "grid":
        return {
            name: CategoricalDistribution(values)
            for name, values in grid_values(campaign.search_space).items()
        }
    found: dict[str, BaseDistribution] = {}
    for name, spec in campaign.search_space.items():
        if spec["type"] == "int":
            found[name] = IntDistribution(
                spec["low"], spec["high"], log=spec.get("log", False), step=spec.get("step") or 1
            )
        elif spec["type"] == "float":
            found[name] = FloatDistribution(
                spec["low"], spec["high"], log=spec.get("log", False), step=spec.get("step")
            )
        else:
            found[name] = CategoricalDistribution(spec["choices"])
    return found


def sampler(campaign: HpoCampaign, trials_so_far: int) -> BaseSampler:
    if campaign.method == "grid":
        # same seed on every rebuild: the same shuffled grid, of which the unvisited points
        # are taken (GridSampler reads them from the trials' system attributes)
        return GridSampler(grid_values(campaign.search_space), seed=campaign.seed)
    seed = (campaign.seed + trials_so_far) % 2**32
    if campaign.method == "random":
        return RandomSampler(seed=seed)
    return TPESampler(seed=seed)


def pruner(campaign: HpoCampaign) -> BasePruner:
    budget = campaign.budget
    if campaign.pruner == "hyperband":
        return HyperbandPruner(
            min_resource=budget.get("min_epochs") or 1,
            max_resource=budget.get("max_epochs") or "auto",
            reduction_factor=3,
        )
    if campaign.pruner == "median":
        return MedianPruner(n_startup_trials=5, n_warmup_steps=budget.get("min_epochs") or 0)
    return NopPruner()


@dataclass
class RebuiltStudy:
    study: optuna.Study
    #: trial number -> Optuna trial id in the rebuilt storage
    trial_ids: dict[int, int]


def rebuild(
    campaign: HpoCampaign,
    trials: Iterable[HpoTrial],
    steps: Mapping[int, Mapping[int, float]],
) -> RebuiltStudy:
    """A fresh in-memory study holding the campaign's trials (in number order) as stored."""
    stored = sorted(trials, key=lambda t: t.number)
    storage = InMemoryStorage()
    study = optuna.create_study(
        storage=storage,
        sampler=sampler(campaign, len(stored)),
        pruner=pruner(campaign),
        study_name=f"hpo-{campaign.id}",
        direction="maximize" if campaign.direction == "maximize" else "minimize",
    )
    dists = distributions(campaign)
    trial_ids: dict[int, int] = {}
    for trial in stored:
        state = STATES[trial.state]
        frozen = FrozenTrial(
            number=trial.number,
            trial_id=trial.number,
            state=state,
            value=trial.value if state == TrialState.COMPLETE else None,
            datetime_start=naive(trial.created_at),
            datetime_complete=naive(trial.finished_at) if state.is_finished() else None,
            params=dict(trial.params),
            distributions={k: dists[k] for k in trial.params if k in dists},
            user_attrs={},
            system_attrs=dict(trial.system_attrs),
            intermediate_values=dict(steps.get(trial.number, {})),
        )
        trial_ids[trial.number] = storage.create_new_trial(study._study_id, template_trial=frozen)
    return RebuiltStudy(study, trial_ids)


def naive(moment: datetime | None) -> datetime | None:
    return moment.replace(tzinfo=None) if moment is not None else None


@dataclass(frozen=True)
class Asked:
    number: int
    params: dict[str, Any]
    system_attrs: dict[str, Any]


def ask(rebuilt: RebuiltStudy, campaign: HpoCampaign) -> Asked:
    trial = rebuilt.study.ask(fixed_distributions=distributions(campaign))
    attrs = rebuilt.study._storage.get_trial_system_attrs(trial._trial_id)
    return Asked(trial.number, dict(trial.params), json_safe(attrs))


def should_prune(rebuilt: RebuiltStudy, number: int) -> bool:
    trial = Trial(rebuilt.study, rebuilt.trial_ids[number])
    return bool(trial.should_prune())


def system_attrs(rebuilt: RebuiltStudy, number: int) -> dict[str, Any]:
    """A trial's system attributes after the pruner ran (the rungs it reached), to store."""
    found = rebuilt.study._storage.get_trial_system_attrs(rebuilt.trial_ids[number])
    return dict(json_safe(found))


def suggest_trial(
    campaign: HpoCampaign, trials: Sequence[HpoTrial], steps: Mapping[int, Mapping[int, float]]
) -> Asked:
    """Rebuild the study and ask it for the next trial: CPU work that grows with the history
    (TPE fits its model over every trial), so the service runs it in a worker thread."""
    return ask(rebuild(campaign, trials, steps), campaign)


@dataclass(frozen=True)
class PruneDecision:
    prune: bool
    #: the trial's system attributes after the pruner ran
    system_attrs: dict[str, Any]


def decide_pruning(
    campaign: HpoCampaign,
    trials: Sequence[HpoTrial],
    steps: Mapping[int, Mapping[int, float]],
    number: int,
) -> PruneDecision:
    """Rebuild the study and ask its pruner about trial ``number`` (a worker thread's work, as
    ``suggest_trial``)."""
    rebuilt = rebuild(campaign, trials, steps)
    prune = should_prune(rebuilt, number)
    return PruneDecision(prune, system_attrs(rebuilt, number))


def json_safe(value: Any) -> Any:
    """System attributes as JSON (GridSampler stores its search space as tuples/lists)."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value
