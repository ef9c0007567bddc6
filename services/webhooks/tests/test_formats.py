"""What Slack and Teams show a person, and the retry arithmetic (pure functions)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from runyard.webhooks.delivery import (
    AttemptResult,
    build_request,
    gone_reason,
    next_retry,
    parse_retry_after,
)
from runyard.webhooks.endpoints import display_url
from runyard.webhooks.formats import format_duration, slack_message, summarize, teams_message

BASE = "https://runyard.example"
FAILED = {
    "id": "evt-1",
    "type": "experiment.failed",
    "subject": "e1",
    "data": {
        "experiment_id": "e1",
        "name": "lstm <big>",
        "status": "failed",
        "model_type": "lstm",
        "final_metrics": {
            "val_loss": 0.41,
            "zeta": 1,
            "val_accuracy": 0.8123456,
            "f1": 0.7,
            "x": 2,
        },
        "best_epoch": 3,
        "total_epochs": 9,
        "duration_seconds": 7.25,
        "error": "CUDA out of memory",
    },
}


def test_a_failed_experiment_summary_has_status_metrics_duration_error_and_link() -> None:
    s = summarize(FAILED, base_url=BASE)
    assert s.title == 'Experiment "lstm <big>" failed'
    facts = dict(s.facts)
    assert facts["Status"] == "failed" and facts["Model"] == "lstm"
    assert facts["Duration"] == "7.2 s" and facts["Best epoch"] == "3 of 9"
    assert [k for k, _v in s.facts[4:]] == ["val_accuracy", "val_loss", "f1", "zeta"]
    assert facts["val_accuracy"] == "0.8123"
    assert s.detail == "CUDA out of memory"
    assert s.link == f"{BASE}/api/v1/experiments/e1"


def test_slack_escapes_markup_and_teams_flags_the_error() -> None:
    slack = slack_message(FAILED, base_url=BASE)
    assert slack["text"].startswith('❌ Experiment "lstm &lt;big&gt;" failed')
    assert "<big>" not in json.dumps(slack)
    assert any(b["type"] == "actions" for b in slack["blocks"])
    card = teams_message(FAILED, base_url=BASE)["attachments"][0]["content"]
    assert {
        "type": "TextBlock",
        "text": "CUDA out of memory",
        "color": "Attention",
        "wrap": True,
    } in card["body"]


def test_other_events_show_their_scalar_fields() -> None:
    event = {
        "id": "evt-2",
        "type": "login.failed",
        "subject": "ada",
        "data": {"username_attempted": "ada", "reason": "invalid_password", "ip_address": None},
    }
    s = summarize(event, base_url=BASE)
    assert s.title == "login.failed"
    assert dict(s.facts) == {"username_attempted": "ada", "reason": "invalid_password"}
    assert s.link is None


@pytest.mark.parametrize(
    ("seconds", "shown"), [(4.25, "4.2 s"), (42, "42 s"), (125, "2 min 5 s"), (3909.4, "1 h 5 min")]
)
def test_durations_read_naturally(seconds: float, shown: str) -> None:
    assert format_duration(seconds) == shown


def test_custom_headers_go_with_every_provider_and_only_generic_is_signed() -> None:
    event = {"id": "evt-3", "type": "experiment.created", "data": {"name": "x"}}
    secret = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    for provider in ("generic", "slack", "teams"):
        request = build_request(
            provider_type=provider, secrets=[secret], event=event, custom_headers={"X-Team": "a"}
        )
        assert request.headers["X-Team"] == "a"
        assert ("webhook-signature" in request.headers) is (provider == "generic")


def result(status: int | None, outcome: str, retry_after: float | None = None) -> AttemptResult:
    return AttemptResult(status, None, "x", 1, outcome, retry_after)


def test_the_next_retry_follows_the_schedule_with_floors_for_429_timeouts_and_retry_after() -> None:
    plain = next_retry(1, result(500, "http_error"), throttled_min_s=60, retry_after_max_s=3600)
    assert plain is not None and plain <= timedelta(seconds=6)
    for throttled in (result(429, "http_error"), result(None, "timeout")):
        delay = next_retry(1, throttled, throttled_min_s=60, retry_after_max_s=3600)
        assert delay == timedelta(seconds=60)
    asked = next_retry(
        1, result(503, "http_error", 600), throttled_min_s=60, retry_after_max_s=3600
    )
    assert asked == timedelta(seconds=600)
    capped = next_retry(
        1, result(429, "http_error", 10**6), throttled_min_s=60, retry_after_max_s=3600
    )
    assert capped == timedelta(seconds=3600)
    late = next_retry(5, result(429, "http_error", 10), throttled_min_s=60, retry_after_max_s=3600)
    assert late is not None and late >= timedelta(hours=4)  # the schedule wins when longer
    assert next_retry(8, result(429, "http_error"), throttled_min_s=60, retry_after_max_s=1) is None


def test_retry_after_is_read_as_seconds_or_as_an_http_date() -> None:
    now = datetime(2026, 11, 21, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("120") == 120
    assert parse_retry_after("Sat, 21 Nov 2026 12:02:00 GMT", now=now) == 120
    assert parse_retry_after("Sat, 21 Nov 2026 11:00:00 GMT", now=now) == 0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


@pytest.mark.parametrize(
    ("provider", "status", "reason"),
    [
        ("generic", 410, "endpoint_gone"),
        ("teams", 410, "endpoint_gone"),
        ("slack", 410, "endpoint_gone"),
        ("slack", 404, "endpoint_rejected"),
        ("slack", 403, "endpoint_rejected"),
        ("generic", 404, None),
        ("generic", 403, None),
        ("slack", 500, None),
        ("generic", None, None),
    ],
)
def test_which_answers_disable_an_endpoint_at_once(provider, status, reason) -> None:
    assert gone_reason(provider, status) == reason


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "https://hooks.slack.com/services/T01/B02/abcSECRET",
            "https://hooks.slack.com/services/T01/B02/***",
        ),
        ("https://user:pw@example.com:8443/hook?sig=SECRET#x", "https://example.com:8443/hook"),
        ("https://[2606:4700::1111]/h", "https://[2606:4700::1111]/h"),
    ],
)
def test_urls_in_events_carry_no_secrets(url: str, shown: str) -> None:
    assert display_url(url) == shown
