from __future__ import annotations

import html
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import HTMLResponse

from runyard.notifications import inapp, preferences, service
from runyard.notifications.links import UNSUBSCRIBE_PATH, Links
from runyard.notifications.runtime import NotificationsRuntimeDep
from runyard.notifications.schemas import (
    EmailLogOut,
    EmailLogPage,
    InAppNotificationOut,
    InboxPage,
    MarkedRead,
    PreferenceList,
    PreferenceOut,
    PreferenceUpdate,
    UnreadCount,
)
from runyard.shared.db import utcnow
from runyard.shared.identity import CurrentPrincipal
from runyard.shared.pagination import DEFAULT_LIMIT, CursorParam, Limit
from runyard.shared.runtime import SessionDep

router = APIRouter(prefix="/api/v1/notifications", tags=["notifications"])

Token = Annotated[str, Query(min_length=1, max_length=4000, description="From the email's link.")]


@router.get("/emails", response_model=EmailLogPage)
async def list_my_emails(
    session: SessionDep,
    principal: CurrentPrincipal,
    limit: Limit = DEFAULT_LIMIT,
    cursor: CursorParam = None,
) -> EmailLogPage:
    """The caller's email log, newest first."""
    emails, next_cursor = await service.list_my_emails(
        session, user_id=principal.user_id, limit=limit, cursor=cursor
    )
    return EmailLogPage(
        items=[EmailLogOut.model_validate(e) for e in emails], next_cursor=next_cursor
    )


# --- preferences -------------------------------------------------------------------------------


@router.get("/preferences", response_model=PreferenceList)
async def list_preferences(session: SessionDep, principal: CurrentPrincipal) -> PreferenceList:
    """The caller's preference for every event type that notifies, defaults included."""
    found = await preferences.list_preferences(session, user_id=principal.user_id)
    return PreferenceList(items=[PreferenceOut.model_validate(p) for p in found])


@router.put("/preferences/{event_type}", response_model=PreferenceOut)
async def update_preference(
    event_type: str, body: PreferenceUpdate, session: SessionDep, principal: CurrentPrincipal
) -> PreferenceOut:
    """Change how the caller hears of one event type (fields left out keep their value).

    Security alerts (`login.failed`, `account.locked`) cannot be switched off or digested: 409.
    The change is published as `notification_preference.updated`; the webhooks service mutes
    the caller's Slack / generic and Teams deliveries of the type from it.
    """
    updated = await preferences.update_preference(
        session,
        user_id=principal.user_id,
        event_type=event_type,
        changes=body.model_dump(exclude_none=True),
    )
    return PreferenceOut.model_validate(updated)


# --- in-app inbox ------------------------------------------------------------------------------


@router.get("/inbox", response_model=InboxPage)
async def list_inbox(
    session: SessionDep,
    principal: CurrentPrincipal,
    limit: Limit = DEFAULT_LIMIT,
    cursor: CursorParam = None,
    unread_only: bool = False,
) -> InboxPage:
    """The caller's in-app notifications, newest first, with the unread count."""
    page = await inapp.list_inbox(
        session, user_id=principal.user_id, limit=limit, cursor=cursor, unread_only=unread_only
    )
    return InboxPage(
        items=[InAppNotificationOut.model_validate(n) for n in page.items],
        next_cursor=page.next_cursor,
        unread_count=page.unread_count,
    )


@router.get("/inbox/unread-count", response_model=UnreadCount)
async def unread_count(session: SessionDep, principal: CurrentPrincipal) -> UnreadCount:
    return UnreadCount(unread_count=await inapp.unread_count(session, user_id=principal.user_id))


@router.post("/inbox/read-all", response_model=MarkedRead)
async def mark_all_read(session: SessionDep, principal: CurrentPrincipal) -> MarkedRead:
    return MarkedRead(marked_read=await inapp.mark_all_read(session, user_id=principal.user_id))


@router.post("/inbox/{notification_id}/read", response_model=InAppNotificationOut)
async def mark_read(
    notification_id: uuid.UUID, session: SessionDep, principal: CurrentPrincipal
) -> InAppNotificationOut:
    row = await inapp.mark_read(session, user_id=principal.user_id, notification_id=notification_id)
    return InAppNotificationOut.model_validate(row)


# --- one-click unsubscribe (RFC 8058); public: the signed token is the credential --------------


async def links_of(runtime: NotificationsRuntimeDep) -> Links:
    return Links.from_settings(runtime.settings)


LinksDep = Annotated[Links, Depends(links_of)]


def page(title: str, body: str) -> HTMLResponse:
    return HTMLResponse(
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title></head>"
        f"<body style='font-family: sans-serif;'><h1>{html.escape(title)}</h1>{body}</body></html>"
    )


def listed(labels: list[str]) -> str:
    return "<ul>" + "".join(f"<li>{html.escape(label)}</li>" for label in labels) + "</ul>"


@router.get("/unsubscribe", response_class=HTMLResponse)
async def confirm_unsubscribe(token: Token, links: LinksDep) -> HTMLResponse:
    """A confirmation page; nothing changes until it is submitted (or a client POSTs)."""
    request = preferences.read_unsubscribe_token(token, links=links, now=utcnow())
    if not request.event_types:
        return page("Nothing to unsubscribe from", "<p>This link stops no emails.</p>")
    action = html.escape(f"{UNSUBSCRIBE_PATH}?token={token}", quote=True)
    return page(
        "Unsubscribe from Runyard emails?",
        "<p>You will no longer get emails about:</p>"
        + listed(request.labels)
        + f"<form method='post' action='{action}'>"
        "<input type='hidden' name='List-Unsubscribe' value='One-Click'>"
        "<button type='submit'>Unsubscribe</button></form>"
        "<p>You can switch them on again in your notification preferences.</p>",
    )


@router.post("/unsubscribe", response_class=HTMLResponse)
async def unsubscribe(token: Token, session: SessionDep, links: LinksDep) -> HTMLResponse:
    """One-click unsubscribe: the link's event types get `email_frequency = never`."""
    request = await preferences.unsubscribe(session, token=token, links=links, now=utcnow())
    return page(
        "You are unsubscribed",
        "<p>You will no longer get emails about:</p>" + listed(request.labels),
    )
