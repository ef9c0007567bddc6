"""Hourly, daily and weekly digests: when an event's digest is due, and building due digests.

Due times are wall-clock times in the user's timezone (daily at ``digest_hour``, weekly on
``digest_weekday`` at ``digest_hour``, hourly at the next full local hour), turned into UTC per
day, so a DST change moves the UTC time and never the local one.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from runyard.notifications import notices, repository
from runyard.notifications.links import Links
from runyard.notifications.mailer import render_email
from runyard.notifications.models import DigestItem, User
from runyard.shared.logging import get_logger

log = get_logger(__name__)

FREQUENCY_NAMES = {"hourly": "hourly", "daily": "daily", "weekly": "weekly"}


def next_digest_at(
    now: datetime,
    frequency: str,
    timezone: str,
    *,
    hour: int = 8,
    weekday: int = 0,
    hourly_period_s: int = 3600,
) -> datetime:
    """The first digest time of ``frequency`` strictly after ``now``, in UTC.

    ``hourly_period_s`` (a divisor of 3600) shortens the hourly period for demos and tests."""
    zone = notices.zone_of(timezone)
    local = now.astimezone(zone)
    if frequency == "hourly":
        top = local.replace(minute=0, second=0, microsecond=0)
        into_hour = (local - top).total_seconds()
        periods = int(into_hour // hourly_period_s) + 1
        # Real time, not wall time: 01:00 + 1h is 03:00 on a spring-forward day.
        return (top.astimezone(UTC) + timedelta(seconds=periods * hourly_period_s)).astimezone(UTC)
    if frequency not in ("daily", "weekly"):
        raise ValueError(f"not a digest frequency: {frequency!r}")
    day = local.date()
    while True:
        candidate = datetime.combine(day, time(hour), tzinfo=zone)
        if candidate > now and (frequency == "daily" or day.weekday() == weekday):
            return candidate.astimezone(UTC)
        day += timedelta(days=1)


async def queue_for_digest(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    timezone: str,
    event_type: str,
    event_id: str,
    event_data: dict[str, Any],
    title: str,
    frequency: str,
    now: datetime,
    hour: int,
    weekday: int,
    hourly_period_s: int = 3600,
) -> uuid.UUID | None:
    """Put an event in the user's next digest; None if it is there already (redelivery)."""
    scheduled_for = next_digest_at(
        now, frequency, timezone, hour=hour, weekday=weekday, hourly_period_s=hourly_period_s
    )
    item_id = await repository.insert_digest_item(
        session,
        values={
            "user_id": user_id,
            "event_type": event_type,
            "event_id": event_id,
            "event_data": event_data,
            "title": title,
            "frequency": frequency,
            "scheduled_for": scheduled_for,
        },
    )
    log.info(
        "notifications.digest.queued" if item_id else "notifications.digest.duplicate_ignored",
        user_id=str(user_id),
        event_type=event_type,
        scheduled_for=scheduled_for.isoformat(),
    )
    return item_id


@dataclass(frozen=True)
class DigestRun:
    digests: int
    items: int


def digest_context(
    user: User, items: list[DigestItem], *, max_items: int
) -> tuple[str, dict[str, Any]]:
    """The frequency name and the ``digest`` template variable: items grouped by type."""
    by_type: dict[str, list[DigestItem]] = defaultdict(list)
    for item in items:
        by_type[item.event_type].append(item)
    groups = []
    for event_type, group in sorted(by_type.items()):
        notice = notices.NOTICES.get(event_type)
        shown = group[:max_items]
        groups.append(
            {
                "event_type": event_type,
                "label": notice.label if notice else event_type,
                "count": len(group),
                "entries": [
                    {
                        "title": item.title,
                        "at": notices.format_local(item.created_at, user.timezone),
                    }
                    for item in shown
                ],
                "more": len(group) - len(shown),
            }
        )
    # A digest holding several frequencies (a preference changed meanwhile) is named after the
    # longest one.
    order = ["hourly", "daily", "weekly"]
    frequency = max((item.frequency for item in items), key=order.index)
    return frequency, {"frequency": frequency, "total": len(items), "groups": groups}


async def build_due_digests(
    session: AsyncSession, *, now: datetime, links: Links, batch_users: int, max_items: int
) -> DigestRun:
    """Claim due items of up to ``batch_users`` users; store one digest email per user.

    The items are marked ``included_in_digest`` in this same transaction, so a digest is never
    stored twice, nor an item lost, whatever crashes when.
    """
    claimed = await repository.claim_due_digest_items(session, now=now, users=batch_users)
    per_user: dict[uuid.UUID, tuple[User, list[DigestItem]]] = {}
    for item, user in claimed:
        per_user.setdefault(user.user_id, (user, []))[1].append(item)
    emails: list[dict[str, Any]] = []
    included: dict[uuid.UUID, list[uuid.UUID]] = {}
    for user, items in per_user.values():
        email_id = uuid.uuid4()
        first = min(items, key=lambda i: (i.created_at, str(i.id)))
        row: dict[str, Any] = {
            "id": email_id,
            "user_id": user.user_id,
            "event_type": "digest",
            "event_id": f"digest:{first.id}",
            "event_data": {"items": [str(i.id) for i in items]},
            "idempotency_key": f"digest:{user.user_id}:{first.id}",
            "template_name": "digest",
            "provider": "smtp",
            "to_address": None,
            "subject": None,
            "body_text": None,
            "body_html": None,
            "unsubscribe_url": None,
            "error_message": None,
        }
        if not user.is_active or not user.email:
            row.update(status="skipped", error_message="user_inactive")
        else:
            frequency, digest = digest_context(user, items, max_items=max_items)
            types = sorted({i.event_type for i in items if i.event_type in notices.NOTICES})
            url = links.unsubscribe_url(user.user_id, types, now=now) if types else None
            rendered = render_email(
                "digest",
                {
                    "user": notices.user_context(user),
                    "digest": digest,
                    "notice_label": f"the {frequency} digest",
                    "unsubscribe_url": url,
                },
            )
            row.update(
                to_address=user.email,
                subject=rendered.subject,
                body_text=rendered.text,
                body_html=rendered.html,
                unsubscribe_url=url,
                status="queued",
            )
        emails.append(row)
        included[email_id] = [i.id for i in items]
    await repository.insert_emails(session, emails)
    await repository.mark_included(session, included)
    if emails:
        log.info("notifications.digest.built", digests=len(emails), items=len(claimed))
    return DigestRun(digests=len(emails), items=len(claimed))
