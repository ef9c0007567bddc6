from __future__ import annotations

from datetime import timedelta

import pytest

from runyard.shared.contracts import all_contracts
from runyard.webhooks.consumers import handlers
from runyard.webhooks.delivery import RETRY_SCHEDULE, retry_delay
from runyard.webhooks.fanout import event_matches, public_event_types


@pytest.mark.parametrize(
    ("patterns", "event_type", "expected"),
    [
        (["experiment.completed"], "experiment.completed", True),
        (["experiment.completed"], "experiment.failed", False),
        (["experiment.*"], "experiment.failed", True),
        (["experiment.*"], "experiments.created", False),
        (["experiment.*"], "hpo_campaign.completed", False),
        (["*.completed"], "nas_campaign.completed", True),
        (["*"], "login.failed", True),
        (["dataset.created", "login.*"], "login.succeeded", True),
        ([], "experiment.completed", False),
    ],
)
def test_enabled_events_match_exact_types_and_wildcards(patterns, event_type, expected) -> None:
    assert event_matches(patterns, event_type) is expected


def test_fan_out_listens_to_every_public_event_type_but_not_the_private_ones() -> None:
    registered = {t for t, _v in all_contracts()}
    private = {
        "webhook.test",
        "webhook.deliveries_updated",  # it would announce its own deliveries
        "dataset_generation.progressed",
        "dataset_import.progressed",
    }
    assert set(handlers()) == registered - private
    assert "experiment.completed" in public_event_types()
    assert "nas_trial.completed" in public_event_types()
    assert not private & set(public_event_types())


def test_retries_follow_the_svix_schedule_with_twenty_percent_jitter() -> None:
    assert [d.total_seconds() for d in RETRY_SCHEDULE] == [5, 300, 1800, 7200, 18000, 36000, 36000]
    for attempt, base in enumerate(RETRY_SCHEDULE, start=1):
        delay = retry_delay(attempt)
        assert delay is not None
        assert base * 0.8 <= delay <= base * 1.2
    assert retry_delay(len(RETRY_SCHEDULE) + 1) is None
    assert retry_delay(1) < timedelta(seconds=7)
