"""Alert rules' events (``alert.triggered``, ``alert.resolved``) as Slack and Teams show them:
the rule's own summary line as the title, the rule, the epoch and the values; escaped like
every user-controlled text; and fanned out like any public event."""

from __future__ import annotations

from runyard.webhooks.fanout import public_event_types
from runyard.webhooks.formats import slack_message, summarize, teams_message

BASE = "https://runyard.example"
SUMMARY = "val_loss diverged in pump-cnn: +38 % over 5 epochs (epoch 41)"
TRIGGERED = {
    "id": "evt-7",
    "type": "alert.triggered",
    "subject": "e1",
    "data": {
        "alert_id": "a1",
        "rule_id": "r1",
        "rule_name": "loss <runaway>",
        "kind": "divergence",
        "severity": "critical",
        "owner_id": "u1",
        "experiment_id": "e1",
        "name": "pump-cnn",
        "epoch": 41,
        "values": {"val_loss": 0.45123, "reference": 0.327, "change_percent": 37.98, "epochs": 5},
        "summary": SUMMARY,
    },
}
RESOLVED = {**TRIGGERED, "id": "evt-8", "type": "alert.resolved"}


def test_alert_events_are_fanned_out_to_webhooks() -> None:
    assert {"alert.triggered", "alert.resolved"} <= set(public_event_types())


def test_a_triggered_alert_reads_as_its_summary() -> None:
    s = summarize(TRIGGERED, base_url=BASE)
    assert (s.icon, s.title) == ("🚨", SUMMARY)
    facts = dict(s.facts)
    assert facts["Rule"] == "loss <runaway> (divergence)" and facts["Severity"] == "critical"
    assert facts["Epoch"] == "41" and facts["val_loss"] == "0.4512"
    assert facts["change_percent"] == "37.98"
    assert s.link == f"{BASE}/api/v1/experiments/e1"


def test_slack_and_teams_show_the_summary_escaped() -> None:
    slack = slack_message(TRIGGERED, base_url=BASE)
    assert slack["text"] == f"🚨 {SUMMARY} · critical"
    fields = " ".join(f["text"] for f in slack["blocks"][1]["fields"])
    assert "loss &lt;runaway&gt; (divergence)" in fields and "<runaway>" not in fields
    card = teams_message(TRIGGERED, base_url=BASE)["attachments"][0]["content"]
    # markdown escaped, ``val_loss`` left as it is (an underscore inside a word)
    assert card["body"][0]["text"] == (
        "🚨 val_loss diverged in pump-cnn: +38 % over 5 epochs \\(epoch 41\\)"
    )
    facts = {f["title"]: f["value"] for f in card["body"][1]["facts"]}
    assert facts["Rule"] == "loss \\<runaway\\> \\(divergence\\)"


def test_a_resolved_alert_says_so() -> None:
    s = summarize(RESOLVED, base_url=BASE)
    assert (s.icon, s.title) == ("✅", f"Resolved: {SUMMARY}")
    assert slack_message(RESOLVED, base_url=BASE)["text"] == f"✅ Resolved: {SUMMARY}"
