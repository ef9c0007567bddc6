"""One HTTP attempt: render the provider's body, sign it, POST it, read a bounded answer."""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import aiohttp

from runyard.webhooks.signing import standard_webhook_headers

#: Svix's schedule: after the first attempt fails, retry after each of these delays.
RETRY_SCHEDULE = tuple(
    timedelta(seconds=s) for s in (5, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600, 10 * 3600)
)
RETRY_JITTER = 0.2
MAX_RESPONSE_BODY = 20 * 1024
USER_AGENT = "Runyard-Webhooks/1.0"


def retry_delay(attempt_number: int) -> timedelta | None:
    """Delay before the next try after attempt ``attempt_number`` (1-based) failed; ``None``
    once the schedule is exhausted."""
    if attempt_number > len(RETRY_SCHEDULE):
        return None
    jitter = random.uniform(1 - RETRY_JITTER, 1 + RETRY_JITTER)
    return RETRY_SCHEDULE[attempt_number - 1] * jitter


@dataclass(frozen=True)
class OutgoingRequest:
    body: str
    headers: dict[str, str]


@dataclass(frozen=True)
class AttemptResult:
    status_code: int | None
    response_body: str | None
    error: str | None
    duration_ms: int

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def canonical_json(document: dict[str, Any]) -> str:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False)


def build_request(*, provider_type: str, secret: str, event: dict[str, Any]) -> OutgoingRequest:
    headers = {"content-type": "application/json", "user-agent": USER_AGENT}
    if provider_type == "slack":
        return OutgoingRequest(canonical_json(slack_message(event)), headers)
    if provider_type == "teams":
        return OutgoingRequest(canonical_json(teams_message(event)), headers)
    body = canonical_json(event)
    headers |= standard_webhook_headers(secret, msg_id=str(event["id"]), body=body)
    return OutgoingRequest(body, headers)


def _title(event: dict[str, Any]) -> str:
    data = event.get("data") or {}
    name = data.get("name") or data.get("username") or event.get("subject", "")
    return f"{event['type']}: {name}" if name else str(event["type"])


def _facts(event: dict[str, Any], limit: int = 10) -> list[tuple[str, str]]:
    """Scalar fields of ``data`` (one level of nested dicts flattened), shortened for chat."""
    facts: list[tuple[str, str]] = []
    for key, value in (event.get("data") or {}).items():
        items = value.items() if isinstance(value, dict) else [(None, value)]
        for sub, val in items:
            if val is None or isinstance(val, dict | list):
                continue
            text = f"{val:.4g}" if isinstance(val, float) else str(val)
            facts.append((key if sub is None else f"{key}.{sub}", text[:200]))
    return facts[:limit]


def slack_message(event: dict[str, Any]) -> dict[str, Any]:
    title = _title(event)
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*{title}*"[:3000]}}
    ]
    facts = _facts(event)
    if facts:
        blocks.append(
            {
                "type": "section",
                "fields": [{"type": "mrkdwn", "text": f"*{k}*\n{v}"} for k, v in facts],
            }
        )
    blocks.append(
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": f"Runyard event `{event['id']}`"}],
        }
    )
    return {"text": f"Runyard: {title}", "blocks": blocks}


def teams_message(event: dict[str, Any]) -> dict[str, Any]:
    card = {
        "type": "AdaptiveCard",
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "version": "1.4",
        "body": [
            {
                "type": "TextBlock",
                "text": _title(event),
                "weight": "Bolder",
                "size": "Medium",
                "wrap": True,
            },
            {"type": "FactSet", "facts": [{"title": k, "value": v} for k, v in _facts(event)]},
            {
                "type": "TextBlock",
                "text": f"Runyard event {event['id']}",
                "isSubtle": True,
                "size": "Small",
                "wrap": True,
            },
        ],
    }
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


async def _read_bounded(response: aiohttp.ClientResponse) -> str:
    raw = bytearray()
    while len(raw) < MAX_RESPONSE_BODY:
        chunk = await response.content.read(MAX_RESPONSE_BODY - len(raw))
        if not chunk:
            break
        raw += chunk
    return raw.decode("utf-8", "replace").replace("\x00", "")


async def post(
    http: aiohttp.ClientSession, url: str, request: OutgoingRequest, *, timeout_s: float
) -> AttemptResult:
    """POST once. Redirects are not followed: a 3xx is a failed attempt."""
    started = time.perf_counter()

    def elapsed() -> int:
        return int((time.perf_counter() - started) * 1000)

    try:
        async with http.post(
            url,
            data=request.body.encode(),
            headers=request.headers,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        ) as response:
            body = await _read_bounded(response)
            status = response.status
            error = None
            if 300 <= status < 400:
                location = response.headers.get("Location", "")
                error = f"HTTP {status}: redirect to {location!r} not followed"[:1000]
            elif not 200 <= status < 300:
                error = f"HTTP {status}"
            return AttemptResult(status, body, error, elapsed())
    except TimeoutError:
        return AttemptResult(None, None, f"timed out after {timeout_s:g}s", elapsed())
    except Exception as exc:
        return AttemptResult(None, None, f"{type(exc).__name__}: {exc}"[:1000], elapsed())
