"""One HTTP attempt (render, sign, POST, read a bounded answer) and the rules that follow it:
when to retry, and when an answer means the endpoint is gone."""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import aiohttp

from runyard.webhooks.formats import canonical_json, slack_message, teams_message
from runyard.webhooks.signing import standard_webhook_headers
from runyard.webhooks.ssrf import TargetPolicy, TargetRefused

#: Svix's schedule: after the first attempt fails, retry after each of these delays.
RETRY_SCHEDULE = tuple(
    timedelta(seconds=s) for s in (5, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600, 10 * 3600)
)
RETRY_JITTER = 0.2
MAX_RESPONSE_BODY = 20 * 1024
USER_AGENT = "Runyard-Webhooks/1.0"
#: Answers after which an endpoint is disabled at once, per provider.
GONE_STATUSES = {"generic": {410}, "teams": {410}, "slack": {403, 404, 410}}

#: What came of an attempt (also the ``outcome`` label of the metrics).
AttemptOutcome = Literal[
    "success", "http_error", "redirect", "timeout", "connection_error", "refused"
]


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
    outcome: AttemptOutcome = "success"
    #: Seconds the receiver asked us to wait (``Retry-After`` on a 429 or 503).
    retry_after_s: float | None = None
    #: When the attempt started.
    sent_at: datetime | None = None

    @property
    def succeeded(self) -> bool:
        return self.outcome == "success"

    @property
    def throttled(self) -> bool:
        return self.status_code == 429 or self.outcome == "timeout"


def next_retry(
    attempt_number: int,
    result: AttemptResult,
    *,
    throttled_min_s: float,
    retry_after_max_s: float,
) -> timedelta | None:
    """When to try again after a failed attempt; ``None`` when the schedule is exhausted.

    The schedule's delay, but at least ``throttled_min_s`` after a 429 or a timeout, and at
    least the receiver's ``Retry-After`` (cut to ``retry_after_max_s``)."""
    delay = retry_delay(attempt_number)
    if delay is None:
        return None
    if result.throttled:
        delay = max(delay, timedelta(seconds=throttled_min_s))
    if result.retry_after_s is not None:
        delay = max(delay, timedelta(seconds=min(result.retry_after_s, retry_after_max_s)))
    return delay


def gone_reason(provider_type: str, status_code: int | None) -> str | None:
    """The disable reason when this answer means the endpoint no longer exists."""
    if status_code in GONE_STATUSES.get(provider_type, set()):
        return "endpoint_gone" if status_code == 410 else "endpoint_rejected"
    return None


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def build_request(
    *,
    provider_type: str,
    secrets: Sequence[str],
    event: dict[str, Any],
    custom_headers: Mapping[str, str] | None = None,
    base_url: str = "http://127.0.0.1:8000",
    body: str | None = None,
) -> OutgoingRequest:
    """Generic: the CloudEvents document, signed per Standard Webhooks with ``webhook-id`` = the
    event id (``body``: the document as canonical JSON already, written once per event by
    fan-out). Slack and Teams: their message formats (their URLs are their credentials)."""
    headers = dict(custom_headers or {})
    headers |= {"content-type": "application/json", "user-agent": USER_AGENT}
    if provider_type == "slack":
        return OutgoingRequest(canonical_json(slack_message(event, base_url=base_url)), headers)
    if provider_type == "teams":
        return OutgoingRequest(canonical_json(teams_message(event, base_url=base_url)), headers)
    if body is None:
        body = canonical_json(event)
    headers |= standard_webhook_headers(secrets, msg_id=str(event["id"]), body=body)
    return OutgoingRequest(body, headers)


async def _read_bounded(response: aiohttp.ClientResponse) -> str:
    raw = bytearray()
    while len(raw) < MAX_RESPONSE_BODY:
        chunk = await response.content.read(MAX_RESPONSE_BODY - len(raw))
        if not chunk:
            break
        raw += chunk
    return raw.decode("utf-8", "replace").replace("\x00", "")


async def post(
    http: aiohttp.ClientSession,
    url: str,
    request: OutgoingRequest,
    *,
    timeout_s: float,
    policy: TargetPolicy,
) -> AttemptResult:
    """POST once. The URL is checked again first (the client's resolver checks every address
    it connects to). Redirects are not followed: a 3xx is a failed attempt."""
    sent_at = datetime.now(UTC)
    started = time.perf_counter()

    def result(
        status: int | None,
        body: str | None,
        error: str | None,
        outcome: AttemptOutcome = "success",
        retry_after_s: float | None = None,
    ) -> AttemptResult:
        duration_ms = int((time.perf_counter() - started) * 1000)
        return AttemptResult(status, body, error, duration_ms, outcome, retry_after_s, sent_at)

    try:
        policy.check_url(url)
        async with http.post(
            url,
            data=request.body.encode(),
            headers=request.headers,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        ) as response:
            body = await _read_bounded(response)
            status = response.status
            if 200 <= status < 300:
                return result(status, body, None)
            if 300 <= status < 400:
                location = response.headers.get("Location", "")
                error = f"HTTP {status}: redirect to {location!r} not followed"[:1000]
                return result(status, body, error, "redirect")
            retry_after = None
            if status in (429, 503):
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
            return result(status, body, f"HTTP {status}", "http_error", retry_after)
    except TargetRefused as exc:
        return result(None, None, f"refused: {exc}"[:1000], "refused")
    except TimeoutError:
        return result(None, None, f"timed out after {timeout_s:g} s", "timeout")
    except aiohttp.ClientConnectorError as exc:
        if isinstance(exc.os_error, TargetRefused):
            return result(None, None, f"refused: {exc.os_error}"[:1000], "refused")
        return result(None, None, f"{type(exc).__name__}: {exc}"[:1000], "connection_error")
    except Exception as exc:
        return result(None, None, f"{type(exc).__name__}: {exc}"[:1000], "connection_error")
