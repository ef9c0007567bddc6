"""The evaluator's rules in isolation (pure code): which epochs are ready, how cooldowns and
fire-once decide, the edge cases of the kinds."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from runyard.experiments.alerts.evaluation import (
    Epoch,
    Rule,
    State,
    evaluate_epoch,
    evaluate_lifecycle,
    ready_epochs,
)

T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def ready(stored: list[int], last: int | None, *, final: bool = False) -> list[int]:
    return list(ready_epochs(stored, last, final=final, gap_patience=100))


def test_epochs_are_ready_up_to_a_gap_a_resend_may_fill() -> None:
    assert ready([0, 1, 2, 3], None) == [0, 1, 2, 3]
    assert ready([1, 2, 3], None) == [1, 2, 3]  # a history may start at 1
    assert ready([1, 2, 5, 6], None) == [1, 2]  # 3 and 4 may still come
    assert ready([1, 2, 5, 6], 2) == []
    assert ready([3, 4, 5, 6], 2) == [3, 4, 5, 6]
    assert ready([11, 12], None) == []  # 1-10 may still come
    assert ready([11, 12], None, final=True) == [11, 12]  # the experiment ended
    # a hole far behind the history's end is passed over (every k-th step, or lost epochs)
    assert ready([1, 2, *range(10, 200)], 2) == list(range(10, 200))
    assert ready([0, 100, 200, 300], 0) == [100, 200]


def run(rule: Rule, values: list[float | None], *, gap_s: float = 1.0) -> list[tuple[str, int]]:
    state, fired = State(), []
    for i, value in enumerate(values):
        epoch = Epoch(
            i + 1, {} if value is None else {"m": value}, T0 + timedelta(seconds=i * gap_s)
        )
        firing = evaluate_epoch(rule, state, epoch, experiment="x", best_mode="min", silent=False)
        if firing:
            fired.append((firing.status, firing.epoch or 0))
    return fired


ABOVE = {"metric": "m", "op": ">", "value": 1.0}


def test_cooldown_counts_between_the_epochs_logging_times() -> None:
    rule = Rule("r", "r", "threshold", "warning", ABOVE, cooldown_s=5, rearm=True)
    spikes = [2.0, 0.0, 2.0, 0.0, 2.0, 0.0, 2.0, 0.0, 2.0]
    # epochs a second apart: after the alert at epoch 1 (t=0), the next allowed at t >= 5
    assert run(rule, spikes) == [
        ("triggered", 1),
        ("resolved", 2),
        ("triggered", 7),
        ("resolved", 8),
    ]
    # ten seconds apart: every crossing fires
    assert len(run(rule, spikes, gap_s=10)) == 9


def test_a_missing_metric_changes_nothing_and_nan_is_not_a_crossing() -> None:
    rule = Rule("r", "r", "threshold", "warning", ABOVE, rearm=True)
    assert run(rule, [2.0, None, None, 2.0]) == [("triggered", 1)]
    assert run(rule, [2.0, math.nan, 0.5]) == [("triggered", 1), ("resolved", 3)]


def test_divergence_from_zero_and_plateau_in_max_mode() -> None:
    divergence = Rule(
        "d", "d", "divergence", "warning", {"metric": "m", "epochs": 1, "percent": 50}
    )
    assert run(divergence, [0.0, 0.1]) == [("triggered", 2)]
    assert run(divergence, [0.0, 0.0, -1.0]) == []
    plateau = Rule(
        "p", "p", "plateau", "info", {"metric": "m", "epochs": 2, "min_delta": 0, "mode": "max"}
    )
    assert run(plateau, [0.5, 0.6, 0.6, 0.59]) == [("triggered", 4)]
    assert run(plateau, [0.5, 0.6, 0.6, 0.61, 0.62]) == []


def test_a_stall_fires_again_only_for_a_rearming_rule() -> None:
    for rearm, expected in ((False, 1), (True, 2)):
        rule = Rule("s", "s", "lifecycle", "critical", {"event": "stalled"}, rearm=rearm)
        state = State()
        fired = [
            evaluate_lifecycle(
                rule,
                state,
                event="stalled",
                at=T0 + timedelta(hours=h),
                experiment="x",
                final_metrics={},
                error=None,
            )
            for h in (0, 1)
        ]
        assert len([f for f in fired if f]) == expected
