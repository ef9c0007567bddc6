"""Housekeeping: drop lockout, refresh-token, reset and verification rows that can no longer
matter."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from runyard.auth import repository
from runyard.auth.context import AuthRuntime
from runyard.auth.recovery import repository as recovery_repository
from runyard.shared.db import session_scope
from runyard.shared.logging import get_logger

log = get_logger(__name__)

PURGE_INTERVAL_S = 600.0


async def purge_once(runtime: AuthRuntime) -> tuple[int, int, int]:
    """(lockout rows, rotated refresh tokens, reset and verification rows) deleted."""
    ctx = runtime.context
    now = ctx.clock.now()
    async for session in session_scope(runtime.sessionmaker):
        failures = await repository.delete_stale_unknown_login_failures(
            session, before=now - timedelta(seconds=ctx.settings.lockout_failure_reset_seconds)
        )
        rotated = await repository.delete_expired_rotated_tokens(session, before=now)
        links = await recovery_repository.delete_stale(
            session,
            now=now,
            requests_before=now - timedelta(seconds=ctx.settings.password_reset_window_seconds),
        )
    if failures or rotated or links:
        log.info(
            "auth.purged",
            unknown_login_failures=failures,
            rotated_refresh_tokens=rotated,
            recovery_rows=links,
        )
    return failures, rotated, links


async def run_purger(runtime: AuthRuntime) -> None:
    while True:
        await purge_once(runtime)
        await asyncio.sleep(PURGE_INTERVAL_S)
