"""What Slack and Teams show a person, and the retry arithmetic (pure functions)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from markdown_it import MarkdownIt

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


ATTACK = {
    "id": "evt-9",
    "type": "experiment.failed",
    "subject": "e9",
    "data": {
        "experiment_id": "e9",
        "name": "[click](http://evil.example/login) **urgent** <at>CEO</at> _now_ & ![x](http://i)",
        "status": "failed",
        "model_type": "- {{DATE(2017-02-14T06:08:39Z, SHORT)}} ${secret} [cnn]: http://evil",
        "final_metrics": {"[m](http://evil.example)": 0.5, "val_loss": -0.25},
        "error": "see http://evil.example/logs\n1. step\n    code\n# head\n---\n> quote <b>x</b>",
    },
}


def rendered(text: str) -> str:
    """What a CommonMark renderer (Adaptive Card markdown is a subset) makes of ``text``."""
    return MarkdownIt("commonmark").render(text)


def paragraph(text: str) -> str:
    """One paragraph showing ``text`` exactly, as the renderer writes it."""
    for char, entity in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ('"', "&quot;")):
        text = text.replace(char, entity)
    return f"<p>{text}</p>\n"


def test_teams_cards_show_injected_markdown_links_and_mentions_as_plain_text() -> None:
    card = teams_message(ATTACK, base_url=BASE)["attachments"][0]["content"]
    title, facts, detail, footer = card["body"]
    s = summarize(ATTACK, base_url=BASE)
    # every text renders to one paragraph holding exactly what was typed: no link, image,
    # emphasis, list, heading, quote or HTML made of it
    assert rendered(title["text"]) == paragraph(f"❌ {s.title}")
    assert [(rendered(f["title"]), rendered(f["value"])) for f in facts["facts"]] == [
        (paragraph(k), paragraph(v)) for k, v in s.facts
    ]
    assert s.detail is not None
    lines = [line.strip() for line in s.detail.splitlines()]
    assert rendered(detail["text"]) == paragraph("\n".join(lines))
    texts = [title["text"], detail["text"], footer["text"]]
    texts += [f[k] for f in facts["facts"] for k in ("title", "value")]
    for text in texts:
        assert "<at>" not in text and "{{" not in text and "${" not in text, text
    # no mention entities, and no URL but the experiment's own link
    assert "entities" not in card["msteams"]
    assert [action["url"] for action in card["actions"]] == [f"{BASE}/api/v1/experiments/e9"]


def test_links_are_built_from_ids_that_cannot_leave_runyard() -> None:
    event = {"id": "e", "type": "experiment.created", "data": {"experiment_id": "../../x|y>z"}}
    assert summarize(event, base_url=BASE).link == f"{BASE}/api/v1/experiments/..%2F..%2Fx%7Cy%3Ez"


STALLED = {
    "id": "evt-3",
    "type": "experiment.stalled",
    "subject": "e3",
    "data": {
        "experiment_id": "e3",
        "name": "cnn *night* run",
        "status": "running",
        "model_type": "cnn1d",
        "total_epochs": 21,
        "latest_metrics": {"val_loss": 0.1552, "val_accuracy": 0.9461},
        "started_at": "2026-11-21T12:58:03.114000Z",
        "last_seen_at": "2026-11-21T13:24:55.031000+01:00",
        "stalled_at": "2026-11-21T13:35:07.409000Z",
        "stale_after_s": 600.0,
    },
}


def test_a_stalled_run_reads_as_an_alert_with_its_last_report_and_limit() -> None:
    s = summarize(STALLED, base_url=BASE)
    assert (s.title, s.icon) == ('Experiment "cnn *night* run" stopped reporting', "⚠️")
    facts = dict(s.facts)
    assert facts["Status"] == "running" and facts["Model"] == "cnn1d"
    assert facts["Last report"] == "2026-11-21 12:24:55 UTC"
    assert facts["Silent for more than"] == "10 min 0 s" and facts["Epochs"] == "21"
    assert (facts["val_accuracy"], facts["val_loss"]) == ("0.9461", "0.1552")
    assert s.link == f"{BASE}/api/v1/experiments/e3"
    slack = slack_message(STALLED, base_url=BASE)
    assert slack["text"].startswith('⚠️ Experiment "cnn *night* run" stopped reporting')
    card = teams_message(STALLED, base_url=BASE)["attachments"][0]["content"]
    assert card["body"][0]["text"] == '⚠️ Experiment "cnn \\*night\\* run" stopped reporting'


def test_a_stalled_run_reporting_again_is_told_apart_from_a_resume_after_pause() -> None:
    resumed = {"id": "evt-4", "type": "experiment.resumed", "subject": "e3"}
    after_stall = {**resumed, "data": {**STALLED["data"], "stalled_at": "2026-11-21T13:35:07Z"}}
    after_pause = {**resumed, "data": {**STALLED["data"], "stalled_at": None}}
    assert summarize(after_stall, base_url=BASE).title.endswith('" is reporting again')
    assert summarize(after_pause, base_url=BASE).title.endswith('" resumed')


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
