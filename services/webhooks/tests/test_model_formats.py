"""The model registry's events as Slack, Teams and generic webhooks get them: the event's own
summary line as the title ("champion of pump-cnn moved from v6 to v7 (val_accuracy 0.962 from
experiment ...)"), the model, version and lineage as facts, a link to the version, everything
user-controlled escaped; and fanned out like any public event."""

from __future__ import annotations

from runyard.webhooks.fanout import public_event_types
from runyard.webhooks.formats import slack_message, summarize, teams_message

BASE = "https://runyard.example"
VERSION = {
    "model_id": "5e1f0a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b",
    "model_name": "pump-cnn",
    "owner_id": "0b7c1e5a-2d4f-4a6b-8c9d-1e2f3a4b5c6d",
    "model_version": 7,
    "version_id": "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d",
    "experiment_id": "1b7c1e5a-2d4f-4a6b-8c9d-1e2f3a4b5c6d",
    "experiment_name": "run <7>",
    "metric_name": "val_accuracy",
    "metric_value": 0.96213,
}
ALIAS_SET = {
    "id": "evt-1",
    "type": "model_version.alias_set",
    "subject": VERSION["model_id"],
    "data": {**VERSION, "alias": "champion", "previous_version": 6},
}
CHAMPION = "champion of pump-cnn moved from v6 to v7 (val_accuracy 0.9621 from experiment run <7>)"


def test_registry_events_are_fanned_out_to_webhooks() -> None:
    assert {
        "model.registered",
        "model_version.created",
        "model_version.alias_set",
        "model_version.alias_removed",
        "model_version.archived",
    } <= set(public_event_types())


def test_an_alias_move_reads_as_its_summary_with_lineage() -> None:
    s = summarize(ALIAS_SET, base_url=BASE)
    assert (s.icon, s.title) == ("🏷️", CHAMPION)
    facts = dict(s.facts)
    assert facts["Model"] == "pump-cnn" and facts["Version"] == "v7"
    assert facts["Alias"] == "champion" and facts["Previous version"] == "v6"
    assert facts["Experiment"] == "run <7>" and facts["val_accuracy"] == "0.9621"
    assert s.link == f"{BASE}/api/v1/models/{VERSION['model_id']}/versions/7"


def test_slack_and_teams_escape_the_summary() -> None:
    slack = slack_message(ALIAS_SET, base_url=BASE)
    assert slack["text"] == (
        "🏷️ champion of pump-cnn moved from v6 to v7 (val_accuracy 0.9621 from experiment "
        "run &lt;7&gt;) · v7"
    )
    assert "<7>" not in str(slack["blocks"])
    card = teams_message(ALIAS_SET, base_url=BASE)["attachments"][0]["content"]
    assert card["body"][0]["text"] == (
        "🏷️ champion of pump-cnn moved from v6 to v7 \\(val_accuracy 0.9621 from experiment "
        "run \\<7\\>\\)"
    )
    assert card["actions"][0]["url"] == f"{BASE}/api/v1/models/{VERSION['model_id']}/versions/7"


def test_every_registry_event_has_its_line() -> None:
    created = {
        "id": "evt-2",
        "type": "model_version.created",
        "data": {**VERSION, "artifact_path": "model", "status": "ready", "sha256": "ab" * 32},
    }
    assert summarize(created, base_url=BASE).title == (
        "pump-cnn v7 registered (val_accuracy 0.9621 from experiment run <7>)"
    )
    assert dict(summarize(created, base_url=BASE).facts)["SHA-256"] == "ab" * 6
    removed = {
        "id": "evt-3",
        "type": "model_version.alias_removed",
        "data": {**VERSION, "alias": "challenger"},
    }
    assert summarize(removed, base_url=BASE).title == "challenger of pump-cnn removed (it was v7)"
    archived = {"id": "evt-4", "type": "model_version.archived", "data": VERSION}
    assert summarize(archived, base_url=BASE).title == "pump-cnn v7 archived"
    registered = {
        "id": "evt-5",
        "type": "model.registered",
        "data": {k: VERSION[k] for k in ("model_id", "model_name", "owner_id")},
    }
    s = summarize(registered, base_url=BASE)
    assert (s.title, s.link) == (
        'Model "pump-cnn" registered',
        f"{BASE}/api/v1/models/{VERSION['model_id']}",
    )
    # a payload that is not the contract's falls back to the generic line
    assert summarize({**archived, "data": {"name": "x"}}, base_url=BASE).title == (
        "model_version.archived: x"
    )
