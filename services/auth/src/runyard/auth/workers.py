"""Housekeeping: drop lockout and refresh-token rows that can no longer matter."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from runyard.auth import repository
from runyard.auth.context import AuthRuntime
from runyard.shared.db import session_scope
from runyard.shared.logging import get_logger

log = get_logger(__name__)

PURGE_INTERVAL_S = 600.0


async def purge_once(runtime: AuthRuntime) -> tuple[int, int]:
    ctx = runtime.context
    now = ctx.clock.now()
    async for session in session_scope(runtime.sessionmaker):
        failures = await repository.delete_stale_unknown_login_failures(
            session, before=now - timedelta(seconds=ctx.settings.lockout_failure_reset_seconds)
        )
        rotated = await repository.delete_expired_rotated_tokens(session, before=now)
    if failures or rotated:
        log.info("auth.purged", unknown_login_failures=failures, rotated_refresh_tokens=rotated)
    return failures, rotated


async def run_purger(runtime: AuthRuntime) -> None:
    while True:
        await purge_once(runtime)
        await asyncio.sleep(PURGE_INTERVAL_S)
