"""What each provider receives: generic CloudEvents, a Slack message, a Teams Adaptive Card.

Slack and Teams get a summary a person can read at a glance: for experiments the name, status,
model, key metrics, duration and a link; for anything else the event's scalar fields.

Most of it is user-controlled (an experiment's name, its model type, metric names, an error
message), and both providers render markup: every such string is escaped for its provider, so
it shows as typed and never becomes a link, a mention, formatting or a date function. The only
URL a message carries is Runyard's own link, built from an id.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

#: Metrics shown first when an experiment has them; the rest follow in their own order.
PREFERRED_METRICS = (
    "val_accuracy",
    "accuracy",
    "val_loss",
    "loss",
    "f1_macro",
    "f1",
    "precision",
    "recall",
    "auc",
)
MAX_METRICS = 4

EXPERIMENT_VERBS = {
    "experiment.created": ("created", "🆕"),
    "experiment.started": ("started", "▶️"),
    "experiment.paused": ("paused", "⏸️"),
    "experiment.resumed": ("resumed", "⏯️"),
    "experiment.completed": ("completed", "✅"),
    "experiment.failed": ("failed", "❌"),
    "experiment.cancelled": ("cancelled", "🚫"),
    "experiment.stalled": ("stopped reporting", "⚠️"),
}
#: ``experiment.resumed`` of a stalled run (its ``stalled_at`` set), not of a paused one
REPORTING_AGAIN = ("is reporting again", "🔄")
#: alert rules' events: the icon by severity (``alert.triggered``), or the all-clear
ALERT_ICONS = {"critical": "🚨", "warning": "⚠️", "info": "ℹ️"}  # noqa: RUF001
ALERT_RESOLVED_ICON = "✅"
#: the model registry's events: their icons (the title is the event's own summary line)
MODEL_ICONS = {
    "model.registered": "🗂️",
    "model_version.created": "📦",
    "model_version.alias_set": "🏷️",
    "model_version.alias_removed": "🚮",
    "model_version.archived": "🗄️",
}
#: Links by the id field a payload carries: (field, API path under the public base URL).
LINKS = (
    ("experiment_id", "/api/v1/experiments/{}"),
    ("dataset_id", "/api/v1/datasets/{}"),
    ("webhook_id", "/api/v1/webhooks/{}"),
)


def canonical_json(document: dict[str, Any]) -> str:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class Summary:
    title: str
    icon: str
    event_type: str
    event_id: str
    facts: list[tuple[str, str]] = field(default_factory=list)
    highlights: list[str] = field(default_factory=list)
    detail: str | None = None
    link: str | None = None


def format_duration(seconds: float) -> str:
    total = round(seconds)
    if total < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{total} s"
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {secs} s"


def format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def key_metrics(metrics: dict[str, Any]) -> list[tuple[str, str]]:
    numeric = {k: v for k, v in metrics.items() if isinstance(v, int | float)}
    ordered = [k for k in PREFERRED_METRICS if k in numeric]
    ordered += [k for k in numeric if k not in ordered]
    return [(k, format_value(numeric[k])) for k in ordered[:MAX_METRICS]]


def format_moment(value: Any) -> str:
    """An event's RFC 3339 time as ``2026-11-21 13:24:55 UTC`` (as given if it is not one)."""
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return str(value)[:64]
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _stall_facts(data: dict[str, Any]) -> list[tuple[str, str]]:
    """What a stalled run's message adds: since when it is silent, and the limit it passed."""
    facts: list[tuple[str, str]] = []
    last = data.get("last_seen_at") or data.get("started_at")
    if last:
        facts.append(("Last report", format_moment(last)))
    limit = data.get("stale_after_s")
    if isinstance(limit, int | float) and not isinstance(limit, bool):
        facts.append(("Silent for more than", format_duration(float(limit))))
    if data.get("total_epochs") is not None:
        facts.append(("Epochs", format_value(data["total_epochs"])))
    return facts


def _link(data: dict[str, Any], base_url: str) -> str | None:
    for key, path in LINKS:
        if data.get(key):
            return base_url.rstrip("/") + path.format(quote(str(data[key]), safe=""))
    return None


def _scalar_facts(data: dict[str, Any], limit: int = 10) -> list[tuple[str, str]]:
    """Scalar fields of ``data`` (one level of nested dicts flattened), shortened for chat."""
    facts: list[tuple[str, str]] = []
    for key, value in data.items():
        items = value.items() if isinstance(value, dict) else [(None, value)]
        for sub, val in items:
            if val is None or isinstance(val, dict | list):
                continue
            facts.append((key if sub is None else f"{key}.{sub}", format_value(val)[:200]))
    return facts[:limit]


def _alert_summary(
    data: dict[str, Any], event_type: str, event_id: str, link: str | None
) -> Summary:
    """An alert rule fired or cleared: its own summary line as the title ("val_loss diverged in
    pump-cnn: +38 % over 5 epochs (epoch 41)"), then the rule and the values behind it."""
    severity = str(data.get("severity", ""))
    resolved = event_type == "alert.resolved"
    icon = ALERT_RESOLVED_ICON if resolved else ALERT_ICONS.get(severity, "🔔")
    facts = [
        ("Rule", f"{data.get('rule_name', '')} ({data.get('kind', '')})"),
        ("Severity", severity),
        ("Experiment", str(data.get("name", ""))),
    ]
    if data.get("epoch") is not None:
        facts.append(("Epoch", format_value(data["epoch"])))
    values = data.get("values") or {}
    facts += [(str(k), format_value(v)[:200]) for k, v in list(values.items())[:MAX_METRICS]]
    summary = str(data.get("summary") or data.get("rule_name") or event_type)
    return Summary(
        title=("Resolved: " if resolved else "") + summary[:500],
        icon=icon,
        event_type=event_type,
        event_id=event_id,
        facts=facts,
        highlights=[] if resolved else [severity],
        link=link,
    )


def _model_summary(
    data: dict[str, Any], event_type: str, event_id: str, base_url: str
) -> Summary | None:
    """A registry event: its contract's summary line as the title ("champion of pump-cnn is
    now v7 (val_accuracy 0.962 from experiment X)"), then the model, version and lineage;
    the link goes to the version (or the model). None if the payload is not the contract's."""
    from pydantic import ValidationError

    from runyard.shared.events import EventPayload

    contract = EventPayload.registry.get((event_type, 1))
    try:
        payload = contract.model_validate(data) if contract else None
    except ValidationError:
        return None
    summary = getattr(payload, "summary", None)
    if not callable(summary):
        return None
    version = data.get("model_version")
    facts = [("Model", str(data.get("model_name", "")))]
    if version is not None:
        facts.append(("Version", f"v{version}"))
    if data.get("alias"):
        facts.append(("Alias", str(data["alias"])))
    if data.get("previous_version") is not None:
        facts.append(("Previous version", f"v{data['previous_version']}"))
    if data.get("status"):
        facts.append(("Status", str(data["status"])))
    if data.get("experiment_name") or data.get("experiment_id"):
        facts.append(("Experiment", str(data.get("experiment_name") or data["experiment_id"])))
    if data.get("metric_name") and data.get("metric_value") is not None:
        facts.append((str(data["metric_name"]), format_value(data["metric_value"])))
    if data.get("sha256"):
        facts.append(("SHA-256", str(data["sha256"])[:12]))
    link = base_url.rstrip("/") + "/api/v1/models/" + quote(str(data.get("model_id")), safe="")
    if version is not None:
        link += f"/versions/{quote(str(version), safe='')}"
    return Summary(
        title=str(summary())[:500],
        icon=MODEL_ICONS[event_type],
        event_type=event_type,
        event_id=event_id,
        facts=[(k, v[:200]) for k, v in facts],
        highlights=[f"v{version}"] if version is not None else [],
        link=link,
    )


def summarize(event: dict[str, Any], *, base_url: str) -> Summary:
    data: dict[str, Any] = event.get("data") or {}
    event_type = str(event["type"])
    event_id = str(event["id"])
    link = _link(data, base_url)
    if event_type in EXPERIMENT_VERBS:
        verb, icon = EXPERIMENT_VERBS[event_type]
        if event_type == "experiment.resumed" and data.get("stalled_at"):
            verb, icon = REPORTING_AGAIN
        metrics = key_metrics(data.get("final_metrics") or data.get("latest_metrics") or {})
        facts = [("Status", str(data.get("status", verb)))]
        if data.get("model_type"):
            facts.append(("Model", str(data["model_type"])))
        if event_type == "experiment.stalled":
            facts += _stall_facts(data)
        duration = data.get("duration_seconds")
        if isinstance(duration, int | float):
            facts.append(("Duration", format_duration(float(duration))))
        if data.get("best_epoch") is not None:
            total = data.get("total_epochs")
            facts.append(("Best epoch", f"{data['best_epoch']} of {total}" if total else "—"))
        facts += metrics
        highlights = [f"{k} {v}" for k, v in metrics[:2]]
        if isinstance(duration, int | float):
            highlights.append(format_duration(float(duration)))
        error = data.get("error")
        return Summary(
            title=f'Experiment "{data.get("name", event.get("subject", ""))}" {verb}',
            icon=icon,
            event_type=event_type,
            event_id=event_id,
            facts=facts,
            highlights=highlights,
            detail=str(error)[:1000] if error else None,
            link=link,
        )
    if event_type in ("alert.triggered", "alert.resolved"):
        return _alert_summary(data, event_type, event_id, link)
    model = (
        _model_summary(data, event_type, event_id, base_url) if event_type in MODEL_ICONS else None
    )
    if model is not None:
        return model
    name = data.get("name") or data.get("username")
    title = f"{event_type}: {name}" if name else event_type
    return Summary(
        title=title,
        icon="🔔",
        event_type=event_type,
        event_id=event_id,
        facts=_scalar_facts(data),
        link=link,
    )


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_message(event: dict[str, Any], *, base_url: str) -> dict[str, Any]:
    """``text`` (the notification line) and Block Kit ``blocks``."""
    s = summarize(event, base_url=base_url)
    title = _slack_escape(s.title)
    headline = f"<{s.link}|{title}>" if s.link else title
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"{s.icon} *{headline}*"[:3000]}}
    ]
    if s.facts:
        blocks.append(
            {
                "type": "section",
                "fields": [
                    {"type": "mrkdwn", "text": f"*{_slack_escape(k)}*\n{_slack_escape(v)}"[:2000]}
                    for k, v in s.facts[:10]
                ],
            }
        )
    if s.detail:
        detail = _slack_escape(s.detail).replace("```", "'''")
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"```{detail}```"}})
    if s.link:
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Open in Runyard"},
                        "url": s.link,
                    }
                ],
            }
        )
    blocks.append(
        {
            "type": "context",
            "elements": [
                {"type": "mrkdwn", "text": f"Runyard · `{s.event_type}` · event `{s.event_id}`"}
            ],
        }
    )
    text = " · ".join([f"{s.icon} {s.title}", *s.highlights])
    return {"text": _slack_escape(text)[:3000], "blocks": blocks}


#: ASCII punctuation that Adaptive Card markdown (a CommonMark subset in TextBlock text and in
#: Fact titles and values) or Teams acts on: emphasis, links, code, HTML and ``<at>`` mentions,
#: entities, ``{{DATE(...)}}`` functions. ``_`` only where it can delimit emphasis (not inside
#: a word such as ``val_loss``), ``:`` only in ``://`` (a bare URL would be made a link).
_TEAMS_INLINE = re.compile(r"[\\`*\[\](){}<>#~|!&]|(?<![^\W_])_|_(?![^\W_])|:(?=//)")
#: what starts a block at the start of a line: a list item (``-``, ``+``, ``1.``), a heading
#: underline (``=``, ``---``); not a signed number such as ``-0.5``
_TEAMS_LINE_START = re.compile(r"^([-+=])(?![\d.])|^(\d{1,9})(\.)(?=\s|$)", re.MULTILINE)


def _teams_escape(text: str, *, multiline: bool = False) -> str:
    """``text`` as Teams shows it literally: markdown syntax backslash-escaped (CommonMark).
    One line unless ``multiline`` (whitespace runs become one space); lines lose their
    indentation (which would make code blocks)."""
    if multiline:
        text = "\n".join(line.strip() for line in text.splitlines())
    else:
        text = " ".join(text.split())
    text = _TEAMS_INLINE.sub(lambda m: "\\" + m.group(0), text)
    return _TEAMS_LINE_START.sub(
        lambda m: "\\" + m.group(1) if m.group(1) else m.group(2) + "\\" + m.group(3), text
    )


def teams_message(event: dict[str, Any], *, base_url: str) -> dict[str, Any]:
    """An Adaptive Card in the Teams Workflows ``message`` envelope; every text in it escaped
    (``_teams_escape``), and no element with a URL but Runyard's own link."""
    s = summarize(event, base_url=base_url)
    body: list[dict[str, Any]] = [
        {
            "type": "TextBlock",
            "text": f"{s.icon} {_teams_escape(s.title)}",
            "weight": "Bolder",
            "size": "Medium",
            "wrap": True,
        }
    ]
    if s.facts:
        facts = [{"title": _teams_escape(k), "value": _teams_escape(v)} for k, v in s.facts]
        body.append({"type": "FactSet", "facts": facts})
    if s.detail:
        detail = _teams_escape(s.detail, multiline=True)
        body.append({"type": "TextBlock", "text": detail, "color": "Attention", "wrap": True})
    body.append(
        {
            "type": "TextBlock",
            "text": _teams_escape(f"Runyard · {s.event_type} · event {s.event_id}"),
            "isSubtle": True,
            "size": "Small",
            "wrap": True,
        }
    )
    card: dict[str, Any] = {
        "type": "AdaptiveCard",
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "version": "1.4",
        "msteams": {"width": "Full"},
        "body": body,
    }
    if s.link:
        card["actions"] = [{"type": "Action.OpenUrl", "title": "Open in Runyard", "url": s.link}]
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": card,
            }
        ],
    }
