from __future__ import annotations

from fastapi import FastAPI

from runyard.auth.api import router
from runyard.auth.clock import Clock, SystemClock
from runyard.auth.config import Settings
from runyard.auth.consumers import HANDLERS
from runyard.auth.context import AuthContext, AuthRuntime
from runyard.auth.internal_api import router as internal_router
from runyard.auth.models import SCHEMA
from runyard.auth.recovery.reset import run_reset_mailer
from runyard.auth.workers import run_purger
from runyard.shared.contracts import auth as contracts
from runyard.shared.runtime import ServiceSpec, create_service_app

PUBLISHES = (
    contracts.UserRegistered,
    contracts.UserUpdated,
    contracts.UserDeactivated,
    contracts.LoginSucceeded,
    contracts.LoginFailed,
    contracts.AccountLocked,
    contracts.TwoFactorEnabled,
    contracts.TwoFactorDisabled,
    contracts.ApiKeyCreated,
    contracts.ApiKeyRevoked,
    contracts.SessionRevoked,
    contracts.PasswordChanged,
    contracts.PasswordResetRequested,
    contracts.EmailVerificationRequested,
    contracts.EmailVerified,
    contracts.RegistrationAttempted,
)


def create_app(settings: Settings | None = None, *, clock: Clock | None = None) -> FastAPI:
    """The auth service; ``clock`` lets tests move time."""

    async def open_context(runtime: AuthRuntime) -> AuthContext:
        return await AuthContext.open(runtime.settings, clock=clock or SystemClock())

    spec: ServiceSpec[Settings, AuthContext] = ServiceSpec(
        name="auth",
        schema=SCHEMA,
        settings=settings or Settings(),
        routers=[router, internal_router],
        handlers=HANDLERS,
        workers={"purger": run_purger, "password_resets": run_reset_mailer},
        publishes=PUBLISHES,
        open_context=open_context,
        description="Users, logins, sessions, two-factor authentication, API keys, password "
        "reset and email verification.",
    )
    return create_service_app(spec)
