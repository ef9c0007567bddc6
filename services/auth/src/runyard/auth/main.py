from __future__ import annotations

from fastapi import FastAPI

from runyard.auth import security
from runyard.auth.api import SIGNING_KEY, router
from runyard.auth.config import Settings
from runyard.auth.models import SCHEMA
from runyard.shared.contracts import auth as contracts
from runyard.shared.logging import get_logger
from runyard.shared.runtime import Runtime, ServiceSpec, create_service_app

log = get_logger(__name__)


async def load_keys(runtime: Runtime) -> None:
    settings = runtime.settings
    if not isinstance(settings, Settings):
        raise TypeError("auth needs runyard.auth.config.Settings")
    key, origin = security.load_signing_key(settings)
    runtime.state[SIGNING_KEY] = key
    await security.warm_up()
    log.info("auth.signing_key.loaded", kid=key.kid, origin=origin)


def create_app(settings: Settings | None = None) -> FastAPI:
    return create_service_app(
        ServiceSpec(
            name="auth",
            schema=SCHEMA,
            settings=settings or Settings(),
            routers=[router],
            publishes=[contracts.UserRegistered, contracts.LoginSucceeded, contracts.LoginFailed],
            on_startup=load_keys,
            description="Users, logins and access tokens.",
        )
    )
