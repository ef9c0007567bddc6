"""The public auth API (``/api/v1/auth``), reached through the gateway.

Public routes (no identity): register, login, refresh, password reset, email verification, the
JWKS. Everything else reads the caller from the gateway's ``X-Runyard-*`` headers.
"""

from __future__ import annotations

from fastapi import APIRouter

from runyard.auth.api import api_keys, login, me, recovery, sessions, two_factor, users

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])
for group in (login, recovery, me, sessions, two_factor, api_keys, users):
    router.include_router(group.router)

__all__ = ["router"]
