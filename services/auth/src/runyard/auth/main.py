from __future__ import annotations

from fastapi import FastAPI

from runyard.auth import security
from runyard.auth.api import router
from runyard.auth.clock import Clock, SystemClock
from runyard.auth.config import Settings
from runyard.auth.consumers import HANDLERS
from runyard.auth.context import STATE_KEY, AuthContext
from runyard.auth.internal_api import router as internal_router
from runyard.auth.models import SCHEMA
from runyard.auth.passwords import common_passwords
from runyard.auth.workers import run_purger
from runyard.shared.contracts import auth as contracts
from runyard.shared.logging import get_logger
from runyard.shared.runtime import Runtime, ServiceSpec, create_service_app

log = get_logger(__name__)

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
)


def create_app(settings: Settings | None = None, *, clock: Clock | None = None) -> FastAPI:
    settings = settings or Settings()

    async def start(runtime: Runtime) -> None:
        key, origin = security.load_signing_key(settings)
        context = AuthContext.build(settings, clock=clock or SystemClock(), signing_key=key)
        await context.passwords.warm_up()
        common_passwords()
        runtime.state[STATE_KEY] = context
        log.info("auth.signing_key.loaded", kid=key.kid, origin=origin)

    return create_service_app(
        ServiceSpec(
            name="auth",
            schema=SCHEMA,
            settings=settings,
            routers=[router, internal_router],
            handlers=HANDLERS,
            workers={"purger": run_purger},
            publishes=PUBLISHES,
            on_startup=start,
            description="Users, logins, sessions, two-factor authentication and API keys.",
        )
    )
