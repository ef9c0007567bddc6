"""The notifications service's runtime: its ``Settings`` and no objects of its own (no context;
the SMTP client belongs to the email sender loop)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from runyard.notifications.config import Settings
from runyard.shared.runtime import Runtime, get_runtime

NotificationsRuntime = Runtime[Settings, None]


async def notifications_runtime(request: Request) -> NotificationsRuntime:
    return get_runtime(request)


NotificationsRuntimeDep = Annotated[NotificationsRuntime, Depends(notifications_runtime)]
