"""Log out everywhere: every session of the user ends, and on request every API key too."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from runyard.auth import accounts, api_keys, sessions
from runyard.auth.callers import Caller
from runyard.auth.context import AuthContext
from runyard.shared.logging import get_logger

log = get_logger(__name__)

REASON = "logged_out_everywhere"


async def log_out_everywhere(
    session: AsyncSession,
    ctx: AuthContext,
    caller: Caller,
    *,
    include_current: bool,
    revoke_api_keys: bool,
) -> tuple[int, int]:
    """(sessions ended, API keys revoked). The caller's own session stays unless
    ``include_current``: the button on a device that suspects the others."""
    user = await accounts.active_user_for_update(session, caller.user_id)
    ended = await sessions.end_other_sessions(
        session,
        ctx,
        user_id=user.id,
        keep=None if include_current else caller.session_id,
        reason=REASON,
    )
    revoked = (
        await api_keys.revoke_all_api_keys(session, ctx, user_id=user.id) if revoke_api_keys else 0
    )
    await session.flush()
    log.info("auth.logged_out_everywhere", user_id=str(user.id), sessions=ended, api_keys=revoked)
    return ended, revoked
