from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from runyard.notifications import service
from runyard.notifications.schemas import EmailLogOut, EmailLogPage
from runyard.shared.identity import CurrentPrincipal
from runyard.shared.runtime import SessionDep

router = APIRouter(prefix="/api/v1/notifications", tags=["notifications"])


@router.get("/emails", response_model=EmailLogPage)
async def list_my_emails(
    session: SessionDep,
    principal: CurrentPrincipal,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> EmailLogPage:
    """The caller's email log, newest first."""
    page = await service.list_my_emails(
        session, user_id=principal.user_id, limit=limit, cursor=cursor
    )
    return EmailLogPage(
        items=[EmailLogOut.model_validate(e) for e in page.items], next_cursor=page.next_cursor
    )
