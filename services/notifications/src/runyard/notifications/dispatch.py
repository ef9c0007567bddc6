"""What one event becomes for its user: an in-app entry, and an email now, later in a digest,
folded into an alert summary, or none, as the user's preference for its type says."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from runyard.notifications import digests, inapp, notices, preferences, repository, service
from runyard.notifications.mailer import render_email
from runyard.notifications.models import User
from runyard.notifications.service import Options
from runyard.shared.events import CloudEvent
from runyard.shared.logging import get_logger

log = get_logger(__name__)


async def notify(
    session: AsyncSession, *, event: CloudEvent, payload: Any, options: Options
) -> None:
    notice = notices.NOTICES[event.type]
    user_id = notice.recipient(payload)
    if user_id is None:
        log.info("notifications.skipped", event_type=event.type, reason="no_recipient")
        return
    user = await repository.get_user(session, user_id)
    if user is not None and (not user.is_active or not user.email):
        log.info("notifications.skipped", user_id=str(user_id), reason="user_inactive")
        return
    preference = await preferences.preference_for(session, user_id, event.type)
    title = notices.title_of(event, payload)
    if preference.in_app_enabled:
        await inapp.add(
            session,
            user_id=user_id,
            event_type=event.type,
            event_id=event.id,
            title=notice.label,
            body=title,
            data=event.data,
        )
    if not preference.emails:
        log.info("notifications.email.skipped", user_id=str(user_id), reason="preference")
        return
    now = options.clock()
    if preference.digested:
        await digests.queue_for_digest(
            session,
            user_id=user_id,
            timezone=user.timezone if user is not None else "UTC",
            event_type=event.type,
            event_id=event.id,
            event_data=event.model_dump(mode="json"),
            title=title,
            frequency=preference.email_frequency,
            now=now,
            hour=options.digest_hour,
            weekday=options.digest_weekday,
            hourly_period_s=options.digest_hourly_period_s,
        )
        return
    if (
        notice.critical
        and notice.throttled
        and user is not None
        and await fold_into_summary(session, event=event, user=user, options=options, now=now)
    ):
        return
    await service.queue_email_for_user(session, user_id=user_id, event=event, options=options)


async def fold_into_summary(
    session: AsyncSession, *, event: CloudEvent, user: User, options: Options, now: datetime
) -> bool:
    """Throttle a burst of one alert type for one user.

    The first alert opens a window of ``alert_throttle_window_s`` and is emailed at once
    (returns False). The ones that follow in the window are counted into one summary email,
    queued for the window's end and re-rendered with each (returns True).
    """
    await repository.lock_user(session, user.user_id)
    window = await repository.lock_throttle(session, user_id=user.user_id, event_type=event.type)
    if window is None or window.window_ends_at <= now:
        await open_window(session, user=user, event=event, options=options, now=now)
        return False
    count = window.suppressed_count + 1
    values = summary_values(
        event,
        user,
        count=count,
        started_at=window.window_started_at,
        ends_at=window.window_ends_at,
    )
    if window.summary_email_id is not None:
        if not await repository.update_queued_email(
            session, email_id=window.summary_email_id, values=values
        ):
            # The summary is out already (the sender's clock passed the window's end first).
            await open_window(session, user=user, event=event, options=options, now=now)
            return False
    else:
        email_id = uuid.uuid4()
        await repository.insert_email(
            session,
            values={
                "id": email_id,
                "user_id": user.user_id,
                "template_name": "alert_summary",
                "idempotency_key": (
                    f"summary:{user.user_id}:{event.type}:{window.window_started_at.isoformat()}"
                ),
                "provider": "smtp",
                "status": "queued",
                "next_attempt_at": window.window_ends_at,
                **values,
            },
        )
        window.summary_email_id = email_id
    window.suppressed_count = count
    await session.flush()
    log.info(
        "notifications.alert.throttled",
        user_id=str(user.user_id),
        event_type=event.type,
        suppressed=count,
    )
    return True


async def open_window(
    session: AsyncSession, *, user: User, event: CloudEvent, options: Options, now: datetime
) -> None:
    await repository.open_throttle_window(
        session,
        user_id=user.user_id,
        event_type=event.type,
        started_at=now,
        ends_at=now + options.throttle_window,
    )


def summary_values(
    event: CloudEvent, user: User, *, count: int, started_at: datetime, ends_at: datetime
) -> dict[str, Any]:
    notice = notices.NOTICES[event.type]
    rendered = render_email(
        "alert_summary",
        {
            "user": notices.user_context(user),
            "summary": {
                "label": notice.label,
                "count": count,
                "window_started_at": notices.format_local(started_at, user.timezone),
                "window_ends_at": notices.format_local(ends_at, user.timezone),
            },
            "facts": [
                ("Latest", notices.title_of(event, event.payload())),
                ("When", notices.format_local(event.time, user.timezone)),
            ],
            "notice_label": notice.label,
            "unsubscribe_url": None,
        },
    )
    return {
        "event_type": event.type,
        "event_id": event.id,
        "event_data": event.model_dump(mode="json"),
        "to_address": user.email,
        "subject": rendered.subject,
        "body_text": rendered.text,
        "body_html": rendered.html,
    }
